//! `cargo xtask bench [--quick | --full] [--out FILE] [--engines A,B] [--stores A,B]`: engines ×
//! stores on the OneFolder workload, each figure next to its baseline from the same run, written
//! as a Markdown report.
//!
//! The measurements live in `crates/bench` (`onefolder-bench`); this task builds its binary in
//! release, asks it which engines and stores are compiled in (`onefolder-bench list`, backed by
//! the one list in `crates/bench/src/backends.rs`), runs every step in its own process (so that
//! peak RSS belongs to one step), shows a progress line per step, prints the report and writes
//! it: `BENCHMARKS.md` for the full preset, `target/bench/BENCHMARKS.quick.md` for `--quick`.
//!
//! Numbers never fail the task: a target that is missed is reported as missed. Only a step
//! that crashes makes the task fail (after the report is written), because then the benchmark
//! itself is broken. The hand-written analysis between the `analysis` markers of an existing
//! report is kept.
//!
//! Last, when `node` is on the PATH, the Node binding's step (issue 16): `fetchFiles` and
//! `searchFiles` through `SyncBackend` against the prototype's Yjs document in JavaScript
//! (`crates/node/bench/data-storage.js`, see [`node_step`]), on the addon built in release. Its
//! section sits between the `node` markers of the report: `--node-only` runs just that step
//! and replaces the section of the existing report (`--node-json FILE` renders it from a JSON
//! the script wrote, without running anything), so the full figures can be taken without
//! rerunning the hour-long full bench; `--no-node` skips the step.
//!
//! After the cold opens of each pair, the `cli-query` step (issue 14, see [`cli`]): open + one
//! tag query through the release `onefolder-sync` against the prototype's document loaded by
//! npm `yjs` in a Node process, each a whole process; `--cli-only` runs just that step on the
//! replicas left in `target/bench-work/` and replaces its section of the existing report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::project_root;

#[path = "bench_cli.rs"]
mod cli;

const ANALYSIS_START: &str = "<!-- analysis:start -->";
const ANALYSIS_END: &str = "<!-- analysis:end -->";
const NODE_START: &str = "<!-- node:start -->";
const NODE_END: &str = "<!-- node:end -->";

/// Label of the Node binding's step in [`Results`].
const NODE_STEP: &str = "node-data-storage";

/// Repetitions of the cold-open steps (each a fresh process); the median is reported.
const OPEN_REPEATS: usize = 3;

/// What to do with the Node binding's step.
#[derive(Clone, Debug, PartialEq)]
enum NodeMode {
    /// After the other steps, when `node` is there (the default).
    Run,
    /// Not at all (`--no-node`).
    Skip,
    /// Only this step; its section replaces the one of the existing report (`--node-only`).
    Only,
    /// Only the section, rendered from this JSON of the script (`--node-json FILE`).
    FromJson(PathBuf),
}

struct Options {
    preset: &'static str,
    out: PathBuf,
    /// Only these engines / stores (all compiled-in ones when empty).
    engines: Vec<String>,
    stores: Vec<String>,
    node: NodeMode,
    /// Only the `cli-query` step (`--cli-only`).
    cli_only: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut preset = "full";
    let mut out = None;
    let (mut engines, mut stores) = (Vec::new(), Vec::new());
    let mut node = NodeMode::Run;
    let mut cli_only = false;
    let mut it = args.iter();
    let list = |v: Option<&String>| -> Result<Vec<String>> {
        Ok(v.context("a comma-separated list")?.split(',').map(str::to_owned).collect())
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => preset = "quick",
            "--full" => preset = "full",
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a file")?)),
            "--engines" => engines = list(it.next())?,
            "--stores" => stores = list(it.next())?,
            "--no-node" => node = NodeMode::Skip,
            "--node-only" => node = NodeMode::Only,
            "--cli-only" => cli_only = true,
            "--node-json" => node = NodeMode::FromJson(PathBuf::from(it.next().context("--node-json needs a file")?)),
            other => bail!(
                "unknown bench option {other:?} (--quick, --full, --out FILE, --engines A,B, --stores A,B, --no-node, \
                 --node-only, --node-json FILE, --cli-only)"
            ),
        }
    }
    let root = project_root();
    let out = out.unwrap_or_else(|| match preset {
        "full" => root.join("BENCHMARKS.md"),
        _ => target_dir().join("bench").join("BENCHMARKS.quick.md"),
    });
    Ok(Options { preset, out, engines, stores, node, cli_only })
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join("target"))
}

/// One step's outcome.
#[derive(Clone, Debug)]
enum Outcome {
    Ok(Value),
    /// Stopped after this many seconds: a result ("slower than that"), not a crash.
    TimedOut(u64),
    Failed(String),
}

/// Results keyed by (step label, engine, store).
#[derive(Default)]
struct Results {
    map: BTreeMap<(String, String, String), Outcome>,
    failures: Vec<String>,
    /// Why the Node binding's step did not run (no `node`, `--no-node`), when it did not.
    node_not_run: Option<String>,
    /// Why the `cli-query` step did not run, when it did not.
    cli_not_run: Option<String>,
}

impl Results {
    fn get(&self, step: &str, engine: &str, store: &str) -> Option<&Value> {
        match self.map.get(&(step.to_owned(), engine.to_owned(), store.to_owned())) {
            Some(Outcome::Ok(v)) => Some(v),
            _ => None,
        }
    }
    fn num(&self, step: &str, engine: &str, store: &str, field: &str) -> Option<f64> {
        self.get(step, engine, store)?.get(field)?.as_f64()
    }
    fn timed_out(&self, step: &str, engine: &str, store: &str) -> Option<u64> {
        match self.map.get(&(step.to_owned(), engine.to_owned(), store.to_owned())) {
            Some(Outcome::TimedOut(secs)) => Some(*secs),
            _ => None,
        }
    }
    /// A time cell: the value, "> N s" when the step was stopped, "–" otherwise.
    fn ms_cell(&self, step: &str, engine: &str, store: &str, field: &str) -> String {
        match (self.num(step, engine, store, field), self.timed_out(step, engine, store)) {
            (Some(ms), _) => fmt_ms(ms),
            (None, Some(secs)) => format!("> {secs} s (stopped)"),
            _ => "–".into(),
        }
    }
    fn failed(&self, step: &str, engine: &str, store: &str) -> Option<&str> {
        match self.map.get(&(step.to_owned(), engine.to_owned(), store.to_owned())) {
            Some(Outcome::Failed(e)) => Some(e),
            _ => None,
        }
    }
}

struct Runner {
    bin: PathBuf,
    preset: &'static str,
    total: usize,
    done: usize,
}

/// How long a step may run before it is stopped and reported as "slower than that". Replaying a
/// whole import from the store's log can be very slow for an engine whose apply cost grows with
/// the document, so that step gets a short limit.
fn step_timeout(preset: &str, label: &str) -> Duration {
    Duration::from_secs(match (preset, label) {
        ("full", "open-as-left") => 120,
        ("full", _) => 3 * 3600,
        (_, "open-as-left") => 15,
        _ => 900,
    })
}

impl Runner {
    /// Runs one step of the bench binary; returns its JSON line.
    fn step(&mut self, step: &str, engine: &str, store: &str, dir: &Path) -> Outcome {
        self.step_as(step, step, engine, store, dir)
    }

    /// Runs one step, with the time limit of `label`.
    fn step_as(&mut self, label: &str, step: &str, engine: &str, store: &str, dir: &Path) -> Outcome {
        self.done += 1;
        let pair = if store.is_empty() { engine.to_owned() } else { format!("{engine}×{store}") };
        eprint!("[{:>2}/{}] {pair:<18} {label:<15} … ", self.done, self.total);
        let started = Instant::now();
        let mut cmd = Command::new(&self.bin);
        cmd.args([step, "--engine", engine, "--preset", self.preset, "--dir"])
            .arg(dir)
            .args(["--store", if store.is_empty() { "sqlite" } else { store }])
            .current_dir(project_root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let timeout = step_timeout(self.preset, label);
        let outcome = outcome_of(run_with_timeout(cmd, timeout), timeout, None);
        report_outcome(&outcome, started);
        outcome
    }
}

/// The outcome of a step's process: its last JSON line on success. On failure, the lines of
/// stderr from the last one starting with `error_prefix` (when given and found), else the last
/// six lines of its output.
fn outcome_of(run: Result<(bool, String, String, bool)>, timeout: Duration, error_prefix: Option<&str>) -> Outcome {
    match run {
        Ok((_, _, _, true)) => Outcome::TimedOut(timeout.as_secs()),
        Ok((true, stdout, _, _)) => match stdout.lines().rev().find_map(|l| serde_json::from_str::<Value>(l).ok()) {
            Some(v) => Outcome::Ok(v),
            None => Outcome::Failed(format!("no JSON line in the output: {stdout}")),
        },
        Ok((false, stdout, stderr, _)) => {
            let lines: Vec<&str> = stderr.lines().collect();
            let from = error_prefix.and_then(|p| lines.iter().rposition(|l| l.starts_with(p)));
            let tail: Vec<&str> = match from {
                Some(i) => lines[i..].iter().take(4).copied().collect(),
                None => {
                    let mut tail: Vec<&str> = stderr.lines().chain(stdout.lines()).rev().take(6).collect();
                    tail.reverse();
                    tail
                }
            };
            Outcome::Failed(tail.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" | "))
        }
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

/// Ends a step's progress line.
fn report_outcome(outcome: &Outcome, started: Instant) {
    match outcome {
        Outcome::Ok(_) => eprintln!("{:.1} s", started.elapsed().as_secs_f64()),
        Outcome::TimedOut(secs) => eprintln!("stopped after {secs} s (reported as slower than that)"),
        Outcome::Failed(e) => eprintln!("FAILED after {:.1} s: {e}", started.elapsed().as_secs_f64()),
    }
}

/// Runs `cmd`, killing it after `timeout`; returns (success, stdout, stderr, timed out).
fn run_with_timeout(cmd: Command, timeout: Duration) -> Result<(bool, String, String, bool)> {
    run_echoing(cmd, timeout, false)
}

/// [`run_with_timeout`], also printing each line of the child's stderr as it comes when `echo`
/// (the progress of a long step).
fn run_echoing(mut cmd: Command, timeout: Duration, echo: bool) -> Result<(bool, String, String, bool)> {
    let mut child = cmd.spawn().context("starting the bench binary")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            if echo {
                eprint!("      {text}");
            }
            s.push_str(&text);
            line.clear();
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    Ok((status.is_some_and(|s| s.success()), stdout, stderr, status.is_none()))
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Runs the cold open and its raw baseline `OPEN_REPEATS` times each, alternating (so that both
/// see the same machine load); see [`repeated`].
fn opens(runner: &mut Runner, results: &mut Results, engine: &str, store: &str, dir: &Path) {
    repeated(runner, results, &["open", "open-raw"], engine, store, dir);
}

/// Fields of a repeated step that are reported as the median of its runs (when it has them).
const MEDIAN_FIELDS: [&str; 3] = ["ms", "peak_rss_kib", "tag_query_ms"];

/// Runs each of `steps` `OPEN_REPEATS` times, alternating between them (so that they see the
/// same machine load), and records for each the first run's line with the medians of the runs
/// in [`MEDIAN_FIELDS`] (time and RSS). The first failure stops the repetitions and is
/// recorded instead.
fn repeated(runner: &mut Runner, results: &mut Results, steps: &[&str], engine: &str, store: &str, dir: &Path) {
    let mut runs: Vec<Vec<Value>> = vec![Vec::new(); steps.len()];
    for k in 0..OPEN_REPEATS {
        for (i, step) in steps.iter().enumerate() {
            match runner.step(step, engine, store, dir) {
                Outcome::Ok(v) => runs[i].push(v),
                other => {
                    if let Outcome::Failed(e) = &other {
                        let pair = if store.is_empty() { engine.to_owned() } else { format!("{engine}×{store}") };
                        results.failures.push(format!("{pair} {step}: {e}"));
                    }
                    runner.done += steps.len() * OPEN_REPEATS - (k * steps.len() + i) - 1;
                    results.map.insert(((*step).into(), engine.into(), store.into()), other);
                    return;
                }
            }
        }
    }
    for (step, runs) in steps.iter().zip(runs) {
        let mut v = runs[0].clone();
        for field in MEDIAN_FIELDS {
            if v.get(field).is_some() {
                let mut values: Vec<f64> = runs.iter().filter_map(|v| v[field].as_f64()).collect();
                v[field] = median(&mut values).into();
            }
        }
        v["runs"] = OPEN_REPEATS.into();
        results.map.insert(((*step).into(), engine.into(), store.into()), Outcome::Ok(v));
    }
}

fn capture(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(project_root()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

struct Machine {
    cores: String,
    cpu: String,
    memory: String,
    date: String,
    commit: String,
    rustc: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cores: capture("nproc", &[]).unwrap_or_else(|| "unknown".into()),
        cpu,
        memory,
        date: capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".into()),
        commit: capture("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into()),
        rustc: capture("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
    }
}

/// `cargo xtask bench`.
pub fn bench(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    if matches!(opts.node, NodeMode::Only | NodeMode::FromJson(_)) {
        return node_only(&opts);
    }
    if opts.cli_only {
        return cli::only(&opts);
    }
    let started = Instant::now();
    let bin = build_bench_binary()?;
    let list = Command::new(&bin).arg("list").output().context("running onefolder-bench list")?;
    let list: Value = serde_json::from_slice(&list.stdout).context("reading `onefolder-bench list`")?;
    let names = |k: &str| -> Vec<String> {
        list[k].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    let keep = |all: Vec<String>, wanted: &[String]| -> Vec<String> {
        all.into_iter().filter(|n| wanted.is_empty() || wanted.contains(n)).collect()
    };
    let (engines, stores) = (keep(names("engines"), &opts.engines), keep(names("stores"), &opts.stores));
    if engines.is_empty() || stores.is_empty() {
        bail!("the bench binary has no engine or no store compiled in: {list}");
    }
    let workload = Command::new(&bin).args(["workload", "--preset", opts.preset]).output()?;
    let workload: Value = serde_json::from_slice(&workload.stdout).context("reading `onefolder-bench workload`")?;

    let work = target_dir().join("bench-work").join(opts.preset);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let combos: Vec<(String, String)> =
        engines.iter().flat_map(|e| stores.iter().map(move |s| (e.clone(), s.clone()))).collect();
    // Per engine: build-raw, build-bare, history, build-prototype, 3 × open-prototype; per combo:
    // build, open (as left), compact, 3 × open, 3 × open-raw, cli-query, join, join-deltas, bytes,
    // ingest, propagation, idle, requests, converge.
    let per_engine = 4 + OPEN_REPEATS;
    let per_combo = 3 + 2 * OPEN_REPEATS + 9;
    let total = per_engine * engines.len() + per_combo * combos.len() + usize::from(opts.node == NodeMode::Run);
    let mut runner = Runner { bin, preset: opts.preset, total, done: 0 };
    eprintln!(
        "== bench: preset {} ({} engines × {} stores), working in {}",
        opts.preset,
        engines.len(),
        stores.len(),
        work.display()
    );
    let mut results = Results::default();
    let cli_prepared = cli::prepare(&runner.bin, opts.preset, &work, opts.node != NodeMode::Skip);
    let record = |results: &mut Results, label: &str, engine: &str, store: &str, o: Outcome| {
        if let Outcome::Failed(e) = &o {
            results.failures.push(format!("{engine}×{store} {label}: {e}"));
        }
        results.map.insert((label.into(), engine.into(), store.into()), o);
    };
    for engine in &engines {
        let dir = work.join(format!("{engine}-raw"));
        for step in ["build-raw", "build-bare", "history"] {
            let o = runner.step(step, engine, "", &dir);
            record(&mut results, step, engine, "", o);
        }
        // The prototype's layout: built once, loaded OPEN_REPEATS times (median).
        let o = runner.step("build-prototype", engine, "", &dir);
        let built = matches!(o, Outcome::Ok(_));
        record(&mut results, "build-prototype", engine, "", o);
        if built {
            repeated(&mut runner, &mut results, &["open-prototype"], engine, "", &dir);
        } else {
            runner.done += OPEN_REPEATS;
        }
    }
    for (engine, store) in &combos {
        let dir = work.join(format!("{engine}-{store}"));
        let o = runner.step("build", engine, store, &dir);
        let built = matches!(o, Outcome::Ok(_));
        record(&mut results, "build", engine, store, o);
        if !built {
            runner.done += per_combo - 2;
            let o = runner.step("converge", engine, store, &work.join(format!("{engine}-{store}-converge")));
            record(&mut results, "converge", engine, store, o);
            continue;
        }
        let o = runner.step_as("open-as-left", "open", engine, store, &dir);
        record(&mut results, "open-as-left", engine, store, o);
        let o = runner.step("compact", engine, store, &dir);
        record(&mut results, "compact", engine, store, o);
        opens(&mut runner, &mut results, engine, store, &dir);
        cli::step(&mut runner, &mut results, &cli_prepared, engine, store, &dir);
        for step in ["join", "join-deltas", "bytes", "ingest", "propagation", "idle", "requests"] {
            let o = runner.step(step, engine, store, &dir);
            record(&mut results, step, engine, store, o);
        }
        let o = runner.step("converge", engine, store, &dir);
        record(&mut results, "converge", engine, store, o);
        // The next pair needs the disk space more than this one's state.
        let _ = std::fs::remove_dir_all(&dir);
    }
    match opts.node {
        NodeMode::Run => {
            let pick = |names: &[String], preferred: &str| -> String {
                names.iter().find(|n| *n == preferred).or(names.first()).cloned().unwrap_or_default()
            };
            let (engine, store) = (pick(&engines, "yrs"), pick(&stores, "sqlite"));
            node_step(&mut runner, &mut results, &engine, &store, &work);
        }
        _ => results.node_not_run = Some("skipped (`--no-node`)".into()),
    }
    let elapsed = started.elapsed();

    let report = render(&opts, &machine(), &workload, &engines, &combos, &results, elapsed);
    let previous = std::fs::read_to_string(&opts.out).unwrap_or_default();
    let report = keep_analysis(&report, &previous);
    println!("{report}");
    if let Some(parent) = opts.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&opts.out, &report).with_context(|| format!("writing {}", opts.out.display()))?;
    eprintln!("== bench: wrote {} in {:.0} s", opts.out.display(), elapsed.as_secs_f64());
    if !results.failures.is_empty() {
        bail!("{} bench step(s) crashed:\n  {}", results.failures.len(), results.failures.join("\n  "));
    }
    Ok(())
}

/// Builds `onefolder-bench` in release; returns the binary.
fn build_bench_binary() -> Result<PathBuf> {
    crate::run("cargo", &["build", "--release", "-p", "onefolder-bench"])?;
    Ok(target_dir().join("release").join("onefolder-bench"))
}

/// The Node package: `crates/node`.
fn node_dir() -> PathBuf {
    project_root().join("crates").join("node")
}

/// The JSON the Node binding's step writes for `preset`.
fn node_json(preset: &str) -> PathBuf {
    target_dir().join("bench").join(format!("{NODE_STEP}.{preset}.json"))
}

/// The file name cargo gives the addon (a cdylib) on this platform.
fn addon_file_name() -> &'static str {
    if cfg!(target_os = "windows") {
        "onefolder_node.dll"
    } else if cfg!(target_os = "macos") {
        "libonefolder_node.dylib"
    } else {
        "libonefolder_node.so"
    }
}

/// Runs `program args` in `dir`, failing on a non-zero exit.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ (cd {}) {program} {}", dir.display(), args.join(" "));
    let status =
        Command::new(program).args(args).current_dir(dir).status().with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` in {} failed with {status}", args.join(" "), dir.display());
    }
    Ok(())
}

/// What the Node binding's step needs: the npm packages (`npm ci`), the compiled
/// `dist/data-storage.js` and the package's addon (`npm run build`) when missing, and the addon
/// built in release, which the script loads (a debug build would measure the compiler's debug
/// code); returns that addon.
fn prepare_node() -> Result<PathBuf> {
    let dir = node_dir();
    if !dir.join("node_modules").join("yjs").exists() {
        run_in(&dir, "npm", &["ci"])?;
    }
    if !dir.join("dist").join("data-storage.js").exists() || !dir.join("onefolder.node").exists() {
        run_in(&dir, "npm", &["run", "build"])?;
    }
    crate::run("cargo", &["build", "--release", "-p", "onefolder-node"])?;
    Ok(target_dir().join("release").join(addon_file_name()))
}

/// The Node binding's step (issue 16): `crates/node/bench/data-storage.js` on the preset, with
/// ours on `engine` × `store`, the dump from `onefolder-bench dump` of the runner's binary, the
/// addon in release; its JSON also goes to [`node_json`]. Recorded in `results` under
/// [`NODE_STEP`]: a failure (to prepare or to run) is a crashed step, as any other; without
/// `node` on the PATH the step does not run and the report says so.
fn node_step(runner: &mut Runner, results: &mut Results, engine: &str, store: &str, work: &Path) {
    runner.done += 1;
    let progress = format!("[{:>2}/{}] {:<18} {:<15}", runner.done, runner.total, "node", "data-storage");
    let Some(version) = capture("node", &["--version"]) else {
        eprintln!("{progress} … not run: `node` is not on the PATH");
        results.node_not_run = Some("not run: `node` is not on the PATH".into());
        return;
    };
    eprintln!("{progress} … node {version}: preparing the package and the release addon");
    let started = Instant::now();
    let outcome = match prepare_node() {
        Err(e) => Outcome::Failed(format!("preparing crates/node: {e:#}")),
        Ok(addon) => {
            let node_work = work.join("node");
            let json = node_json(runner.preset);
            let _ = std::fs::create_dir_all(&node_work);
            let mut cmd = Command::new("node");
            cmd.arg(node_dir().join("bench").join("data-storage.js"))
                .args(["--preset", runner.preset, "--engine", engine, "--store", store, "--bench-bin"])
                .arg(&runner.bin)
                .arg("--addon")
                .arg(&addon)
                .arg("--json")
                .arg(&json)
                .arg("--work-dir")
                .arg(&node_work)
                .current_dir(node_dir())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            eprintln!("{progress} … running {}", node_dir().join("bench").join("data-storage.js").display());
            let timeout = step_timeout(runner.preset, NODE_STEP);
            outcome_of(run_echoing(cmd, timeout, true), timeout, Some("data-storage.js:"))
        }
    };
    eprint!("{progress} … ");
    report_outcome(&outcome, started);
    if let Outcome::Failed(e) = &outcome {
        results.failures.push(format!("{NODE_STEP}: {e}"));
    }
    results.map.insert((NODE_STEP.into(), String::new(), String::new()), outcome);
}

/// `--node-only` / `--node-json FILE`: the Node binding's section alone, from a run of its step
/// or from the JSON its script wrote, put in place of that section of the existing report
/// `opts.out` (the rest of the report is kept as it is).
fn node_only(opts: &Options) -> Result<()> {
    let mut results = Results::default();
    match &opts.node {
        NodeMode::FromJson(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            if v["preset"].as_str() != Some(opts.preset) {
                bail!(
                    "{} holds the {} preset, not {} (pass --quick or --full)",
                    path.display(),
                    v["preset"],
                    opts.preset
                );
            }
            results.map.insert((NODE_STEP.into(), String::new(), String::new()), Outcome::Ok(v));
        }
        _ => {
            let bin = build_bench_binary()?;
            let work = target_dir().join("bench-work").join(opts.preset);
            std::fs::create_dir_all(&work)?;
            let mut runner = Runner { bin, preset: opts.preset, total: 1, done: 0 };
            let engine = opts.engines.first().map_or("yrs", String::as_str);
            let store = opts.stores.first().map_or("sqlite", String::as_str);
            node_step(&mut runner, &mut results, engine, store, &work);
        }
    }
    let section = node_section(&machine(), &results);
    let previous = std::fs::read_to_string(&opts.out).unwrap_or_default();
    let report = replace_node_section(&previous, &section);
    if let Some(parent) = opts.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&opts.out, &report).with_context(|| format!("writing {}", opts.out.display()))?;
    println!("{section}");
    eprintln!("== bench: wrote the Node binding's section of {}", opts.out.display());
    if !results.failures.is_empty() {
        bail!("{} bench step(s) crashed:\n  {}", results.failures.len(), results.failures.join("\n  "));
    }
    Ok(())
}

/// `report` with its Node binding's section (between the `node` markers) replaced by
/// `section`; a report without one gets it before its closing micro-benchmarks line (or at the
/// end), an empty one a title and the section.
fn replace_node_section(report: &str, section: &str) -> String {
    if let Some(a) = report.find(NODE_START)
        && let Some(b) = report[a..].find(NODE_END).map(|b| a + b + NODE_END.len())
    {
        let rest = report[b..].strip_prefix('\n').unwrap_or(&report[b..]);
        return format!("{}{section}{rest}", &report[..a]);
    }
    if report.trim().is_empty() {
        return format!("# Benchmarks\n\n{section}");
    }
    match report.rfind("\nMicro-benchmarks of the segment codec") {
        Some(i) => format!("{}\n{section}{}", &report[..i], &report[i..]),
        None => format!("{}\n\n{section}", report.trim_end()),
    }
}

/// Replaces the analysis section of `report` with the one of `previous`, when it has one.
fn keep_analysis(report: &str, previous: &str) -> String {
    let section = |s: &str| -> Option<(usize, usize)> {
        let a = s.find(ANALYSIS_START)?;
        let b = s[a..].find(ANALYSIS_END)? + a + ANALYSIS_END.len();
        Some((a, b))
    };
    match (section(report), section(previous)) {
        (Some((a, b)), Some((pa, pb))) => format!("{}{}{}", &report[..a], &previous[pa..pb], &report[b..]),
        _ => report.to_owned(),
    }
}

// ------------------------------------------------------------------------------------------
// Rendering

fn fmt_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e4 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn fmt_kib(kib: f64) -> String {
    format!("{:.0} MiB", kib / 1024.0)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("**{r:.0}×**"),
        Some(r) => format!("**{r:.2}×**"),
        None => "–".into(),
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table { header: header.iter().map(|s| (*s).to_owned()).collect(), rows: Vec::new() }
    }
    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    fn render(&self) -> String {
        let mut s = format!("| {} |\n|{}\n", self.header.join(" | "), "---|".repeat(self.header.len()));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
}

/// One §6 target for one pair.
struct Check {
    met: Option<bool>,
    shown: String,
}

fn check(value: Option<f64>, limit: f64, strict: bool, shown: String) -> Check {
    Check { met: value.map(|v| if strict { v < limit } else { v <= limit }), shown }
}

/// A target: its name, and how to check it for one engine × store.
type CheckFn = fn(&Results, &str, &str) -> Check;

/// A table of `checks` (rows) for every pair (columns), then the list of the missed ones (or a
/// line saying that every one is met).
fn targets(checks: &[(&str, CheckFn)], combos: &[(String, String)], r: &Results) -> String {
    let mut header = vec!["target".to_owned()];
    header.extend(combos.iter().map(|(e, st)| format!("{e} × {st}")));
    let mut t = Table { header, rows: Vec::new() };
    let mut missed = Vec::new();
    for (name, f) in checks {
        let mut row = vec![(*name).to_owned()];
        for (e, st) in combos {
            let c = f(r, e, st);
            let mark = match c.met {
                Some(true) => "met",
                Some(false) => {
                    missed.push(format!("{name} — {e} × {st}: {}", c.shown.replace("**", "")));
                    "**not met**"
                }
                None => "not measured",
            };
            row.push(format!("{mark} ({})", c.shown));
        }
        t.row(row);
    }
    let mut s = t.render();
    s.push('\n');
    if missed.is_empty() {
        s.push_str("Every target is met in this run.\n\n");
    } else {
        s.push_str("Missed in this run:\n\n");
        for m in &missed {
            s.push_str(&format!("- {m}\n"));
        }
        s.push('\n');
    }
    s
}

/// Section 10: a new device joins W from snapshot segments against from every delta.
fn join_section(combos: &[(String, String)], r: &Results) -> String {
    let mut s = String::from(
        "\n## 10. A new device joins W\n\n\
         A device with an empty local store joins the library `build` left (one ingest pass until it holds W): \
         from the shared folder as it is — the builder's snapshot segments, published as its deltas grew \
         (`FolderCompaction`), of which it reads the newest and the deltas after it — against a copy of the \
         same folder without snapshot segments, every delta since the start (hard links, read the same way). \
         One run each, in its own process.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "folder: snapshots + deltas",
        "join from snapshots",
        "segments read",
        "bytes read",
        "from every delta",
        "segments read",
        "bytes read",
        "ratio",
    ]);
    for (e, st) in combos {
        let n = |step: &str, f: &str| r.num(step, e, st, f);
        let folder = match (n("join", "snapshots"), n("join", "deltas")) {
            (Some(a), Some(b)) => format!("{a:.0} + {b:.0}"),
            _ => "–".into(),
        };
        t.row(vec![
            format!("{e} × {st}"),
            folder,
            opt(n("join", "ms"), fmt_ms),
            opt(n("join", "reads"), |v| format!("{v:.0}")),
            opt(n("join", "read_bytes"), fmt_bytes),
            opt(n("join-deltas", "ms"), fmt_ms),
            opt(n("join-deltas", "reads"), |v| format!("{v:.0}")),
            opt(n("join-deltas", "read_bytes"), fmt_bytes),
            fmt_ratio(ratio(n("join", "ms"), n("join-deltas", "ms"))),
        ]);
    }
    s.push_str(&t.render());
    s
}

/// Section 9: our figures against W in the JavaScript prototype's layout (`build-prototype`,
/// `open-prototype`, per engine), with their targets.
fn prototype_section(engines: &[String], combos: &[(String, String)], r: &Results) -> String {
    let mut s = String::from("\n## 9. Against the prototype's layout\n\n");
    s.push_str(&format!(
        "The JavaScript prototype kept the library in one Yjs document with the root maps `files`, `tags`, \
         `locations` and `searches`, each record one whole JSON-like value under its id (OneFolder's DTOs), so a \
         tag assignment rewrote the whole file record. Baseline: W in that layout written on the engine crate \
         itself (`build-prototype`; yrs: one `Any::Map` per record; automerge: one JSON string per record), each \
         record written once with its final tags — the smallest document that layout can hold; its load into a \
         fresh document (`open-prototype`: file read, decode, apply; median of {OPEN_REPEATS} processes, peak RSS \
         right after the load); and the update of one more tag assignment there (the same file and tag as the \
         `bytes` step's first). Ours: the engine snapshot after `build`, the cold open of the compacted replica \
         (median), its peak RSS, and the segment of one flushed assignment (84-byte header included). Ratios are \
         ours / the prototype's. *Tag query*: the same query through the model (`files_with_tag`, recursive, \
         the files read) right after our cold open — first (it builds the tag index with one scan), then again \
         (from the index, kept up to date since by local edits and remote applies).\n\n"
    ));
    let checks: [(&str, CheckFn); 8] = [
        ("snapshot ≤ 1.0× the prototype's", |r, e, st| {
            let v = ratio(r.num("build", e, st, "snapshot_bytes"), r.num("build-prototype", e, "", "snapshot_bytes"));
            check(v, 1.0, false, fmt_ratio(v))
        }),
        ("cold open ≤ 0.8× the prototype's load", |r, e, st| {
            let v = ratio(r.num("open", e, st, "ms"), r.num("open-prototype", e, "", "ms"));
            check(v, 0.8, false, fmt_ratio(v))
        }),
        ("peak RSS after open ≤ 1.1× the prototype's", |r, e, st| {
            let v = ratio(r.num("open", e, st, "peak_rss_kib"), r.num("open-prototype", e, "", "peak_rss_kib"));
            check(v, 1.1, false, fmt_ratio(v))
        }),
        ("≤ 160 B per tag assignment (the prototype rewrites the record)", |r, e, st| {
            let v = r.num("bytes", e, st, "one_edit");
            let proto = r.num("build-prototype", e, "", "assignment_bytes");
            check(v, 160.0, false, format!("{} vs {}", opt(v, fmt_bytes), opt(proto, fmt_bytes)))
        }),
        ("tag query from the index ≤ 1.0× the prototype's in-memory query", |r, e, st| {
            let v = ratio(r.num("open", e, st, "tag_query_ms"), r.num("open-prototype", e, "", "tag_query_ms"));
            check(v, 1.0, false, fmt_ratio(v))
        }),
        ("file ids with a tag (recursive) ≤ 5 ms and ≤ 0.01× the scan", |r, e, st| {
            let (ids, scan) = (r.num("open", e, st, "tag_ids_ms"), r.num("open", e, st, "tag_scan_ms"));
            let v = ratio(ids, scan);
            let pass = match (ids, v) {
                (Some(ids), Some(v)) => Some(ids <= 5.0 && v <= 0.01),
                _ => None,
            };
            Check { met: pass, shown: format!("{} / {} = {}", opt(ids, fmt_ms), opt(scan, fmt_ms), fmt_ratio(v)) }
        }),
        ("first tag query after open ≤ 0.2× the cold open (stretch)", |r, e, st| {
            let v = ratio(r.num("open", e, st, "tag_query_first_ms"), r.num("open", e, st, "ms"));
            check(v, 0.2, false, fmt_ratio(v))
        }),
        ("building W through the model ≤ 3× the raw engine", |r, e, st| {
            let v = ratio(r.num("build", e, st, "ms"), r.num("build-raw", e, "", "ms"));
            check(v, 3.0, false, fmt_ratio(v))
        }),
    ];
    s.push_str(&targets(&checks, combos, r));
    let mut t = Table::new(&[
        "engine × store",
        "snapshot: ours / prototype",
        "ratio",
        "cold open / prototype load",
        "ratio",
        "peak RSS: ours / prototype",
        "ratio",
        "per assignment: ours / prototype",
        "ratio",
        "tag query: ours first / indexed / prototype",
        "ratio (indexed)",
    ]);
    for (e, st) in combos {
        let pair = |step: &str, field: &str, f: fn(f64) -> String| {
            let (o, p) = (r.num(step, e, st, field), r.num(&format!("{step}-prototype"), e, "", field));
            (format!("{} / {}", opt(o, f), opt(p, f)), fmt_ratio(ratio(o, p)))
        };
        let (snap, snap_ratio) = pair("build", "snapshot_bytes", fmt_bytes);
        let (open, open_ratio) = pair("open", "ms", fmt_ms);
        let (rss, rss_ratio) = pair("open", "peak_rss_kib", fmt_kib);
        let (ours, proto) = (r.num("bytes", e, st, "one_edit"), r.num("build-prototype", e, "", "assignment_bytes"));
        t.row(vec![
            format!("{e} × {st}"),
            snap,
            snap_ratio,
            open,
            open_ratio,
            rss,
            rss_ratio,
            format!("{} / {}", opt(ours, fmt_bytes), opt(proto, fmt_bytes)),
            fmt_ratio(ratio(ours, proto)),
            format!(
                "{} / {} / {}",
                opt(r.num("open", e, st, "tag_query_first_ms"), fmt_ms),
                opt(r.num("open", e, st, "tag_query_ms"), fmt_ms),
                opt(r.num("open-prototype", e, "", "tag_query_ms"), fmt_ms)
            ),
            fmt_ratio(ratio(r.num("open", e, st, "tag_query_ms"), r.num("open-prototype", e, "", "tag_query_ms"))),
        ]);
    }
    s.push_str(&t.render());
    s.push_str(
        "\nThe prototype's layout on its own, per engine. *Tag query*: the prototype's in-memory \"files with this \
         tag or a tag below it\" — the subtree from the tag records' `subTags`, then every file record's `tags` — \
         for the level-1 tag with the most files in its subtree, timed after the load.\n\n",
    );
    let mut t = Table::new(&[
        "engine",
        "records",
        "build",
        "snapshot",
        "load",
        "peak RSS after load",
        "tag query: tag (subtree)",
        "files found",
        "query time",
    ]);
    for e in engines {
        let e = e.as_str();
        let b = |k: &str| r.num("build-prototype", e, "", k);
        let o = |k: &str| r.num("open-prototype", e, "", k);
        let tag = r.get("open-prototype", e, "").and_then(|v| v["tag_query_tag"].as_str()).unwrap_or("–");
        t.row(vec![
            e.to_owned(),
            opt(b("records"), |v| format!("{v:.0}")),
            r.ms_cell("build-prototype", e, "", "ms"),
            opt(b("snapshot_bytes"), fmt_bytes),
            r.ms_cell("open-prototype", e, "", "ms"),
            opt(o("peak_rss_kib"), fmt_kib),
            format!("{tag} ({} tags)", opt(o("tag_query_subtree"), |v| format!("{v:.0}"))),
            opt(o("tag_query_files"), |v| format!("{v:.0}")),
            opt(o("tag_query_ms"), fmt_ms),
        ]);
    }
    s.push_str(&t.render());
    s
}

/// The Node binding's section (issue 16), between the `node` markers: `fetchFiles` and
/// `searchFiles` through `SyncBackend` against the prototype's Yjs document in JavaScript, from
/// the JSON line of `crates/node/bench/data-storage.js`, with its own date and the machine.
fn node_section(m: &Machine, r: &Results) -> String {
    let mut s = format!("{NODE_START}\n## Node binding: fetchFiles and searchFiles (issue 16)\n\n");
    s.push_str(
        "OneFolder's `DataStorage` calls through the Node binding — `SyncBackend` \
         (`crates/node/dist/data-storage.js`) on the addon built in release — on a library holding the workload, \
         against the prototype's in-memory equivalent in the same node process: the workload as one `Y.Doc` \
         (npm `yjs`) with the root maps `files`, `tags`, `locations`, `searches` and one whole plain record per \
         id, encoded with `Y.encodeStateAsUpdate` and loaded into a fresh document with `Y.applyUpdate`, its \
         `fetchFiles` / `searchFiles` done as the prototype's Yjs backend did them (every record of `files` copied \
         with its dates made `Date`s, filtered, sorted by the key, reversed for a descending order). Ours was \
         filled through `SyncBackend` as the app does (locations, tags, `createFilesFromPath`, `saveFiles` with \
         the tags), closed and opened again (`Library.open` + `SyncBackend.init`: the cold open) before the \
         calls. Each call: one warm-up (*first call*; ours builds its tag index there), then the median of the \
         runs, the two sides alternating; both must return the same files in the same order (ids matched by \
         location and relative path), else the step fails. The search is for the tag carried by the most \
         files. Script: `crates/node/bench/data-storage.js`.\n\n",
    );
    let key = (NODE_STEP.to_owned(), String::new(), String::new());
    match (r.map.get(&key), &r.node_not_run) {
        (Some(Outcome::Ok(v)), _) => s.push_str(&node_table(m, v)),
        (Some(Outcome::TimedOut(secs)), _) => {
            s.push_str(&format!("**Not measured:** the step was stopped after {secs} s.\n"))
        }
        (Some(Outcome::Failed(e)), _) => s.push_str(&format!("**Not measured: the step failed.** `{e}`\n")),
        (None, Some(why)) => s.push_str(&format!("Not measured in this run: {why}.\n")),
        (None, None) => s.push_str("Not measured in this run.\n"),
    }
    s.push_str(&format!("{NODE_END}\n"));
    s
}

/// The figures of one run of the Node binding's step.
fn node_table(m: &Machine, v: &Value) -> String {
    let num = |path: &[&str]| path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_f64);
    let text = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
    let count = |k: &str| opt(v[k].as_f64(), |x| format!("{x:.0}"));
    let mut s = format!(
        "- **Measured:** {} · **commit:** `{}` · node {} · yjs {} · ours on {} × {} · median of {} runs\n\
         - **Machine:** {} cores, {}, {} RAM; shared with other work, so compare ratios, not times\n\
         - **Preset:** `{}` — {} files, {} tags, {} locations, {} assignments\n\n",
        v["date"].as_str().map_or_else(|| m.date.clone(), str::to_owned),
        v["commit"].as_str().map_or_else(|| m.commit.clone(), str::to_owned),
        text("node"),
        text("yjs"),
        text("engine"),
        text("store"),
        count("runs"),
        m.cores,
        m.cpu,
        m.memory,
        text("preset"),
        count("files"),
        count("tags"),
        count("locations"),
        count("assignments"),
    );
    let mut t = Table::new(&[
        "call",
        "files returned",
        "prototype (yjs)",
        "ours (SyncBackend)",
        "ours / prototype",
        "first call: prototype / ours",
    ]);
    for (label, k, files) in [
        ("`fetchFiles('dateAdded', Desc)`".to_owned(), "fetch", count("fetch_files")),
        (
            format!("`searchFiles(tags contains \"{}\", 'dateAdded', Desc)`", text("search_tag")),
            "search",
            count("search_files"),
        ),
    ] {
        let (b, o) = (num(&["baseline", k, "ms"]), num(&["ours", k, "ms"]));
        t.row(vec![
            label,
            files,
            opt(b, fmt_ms),
            opt(o, fmt_ms),
            fmt_ratio(ratio(o, b)),
            format!(
                "{} / {}",
                opt(num(&["baseline", k, "first_ms"]), fmt_ms),
                opt(num(&["ours", k, "first_ms"]), fmt_ms)
            ),
        ]);
    }
    let (load, open) = (num(&["baseline", "load_ms"]), num(&["ours", "open_ms"]));
    t.row(vec![
        format!(
            "load: `Y.applyUpdate` ({}) / cold open: `Library.open` + `SyncBackend.init` (of which `Library.open` {})",
            opt(num(&["baseline", "update_bytes"]), fmt_bytes),
            opt(num(&["ours", "open_library_ms"]), fmt_ms)
        ),
        "–".into(),
        opt(load, fmt_ms),
        opt(open, fmt_ms),
        fmt_ratio(ratio(open, load)),
        "–".into(),
    ]);
    s.push_str(&t.render());
    s.push_str(&format!(
        "\nFilling our library through `SyncBackend` (not compared): {} — locations {}, tags {}, \
         `createFilesFromPath` {}, `saveFiles` with the tags {}. The prototype's document was built and encoded in \
         {}. Peak RSS of the node process (both sides): {}.\n",
        opt(num(&["ours", "populate_ms"]), fmt_ms),
        opt(num(&["ours", "populate", "locations_ms"]), fmt_ms),
        opt(num(&["ours", "populate", "tags_ms"]), fmt_ms),
        opt(num(&["ours", "populate", "create_files_ms"]), fmt_ms),
        opt(num(&["ours", "populate", "save_files_ms"]), fmt_ms),
        opt(num(&["baseline", "build_ms"]), fmt_ms),
        opt(num(&["peak_rss_kib"]), fmt_kib),
    ));
    s
}

fn render(
    opts: &Options,
    m: &Machine,
    workload: &Value,
    engines: &[String],
    combos: &[(String, String)],
    r: &Results,
    elapsed: Duration,
) -> String {
    let p = &workload["sizes"];
    let u = |k: &str| p[k].as_u64().unwrap_or(0);
    let mut s = String::new();
    s.push_str("# Benchmarks\n\n");
    s.push_str(&format!(
        "Written by `cargo xtask bench{}` — do not edit by hand, except between the analysis markers.\n\n",
        if opts.preset == "quick" { " --quick" } else { "" }
    ));
    s.push_str(&format!(
        "- **Machine:** {} cores, {}, {} RAM; shared with other work, so compare ratios, not times\n\
         - **Date:** {} · **commit:** `{}` · {}\n\
         - **Preset:** `{}` — {} files, {} tags (5 levels), {} assignments ({} edits); ingest {} edits per \
         peer segment; propagation over {} edits; idle pass with {} peers × {} segments; {} devices × {} \
         edits on a {}-file library; time budget of the propagation loop and of the idle baseline {} s\n\
         - **Run time:** {:.0} s for {} engine(s) × {} store(s)\n\n",
        m.cores,
        m.cpu,
        m.memory,
        m.date,
        m.commit,
        m.rustc,
        opts.preset,
        u("files"),
        u("tags"),
        workload["assignments"],
        workload["edits"],
        u("ingest_edits"),
        u("propagation_edits"),
        u("idle_peers"),
        u("idle_segments_per_peer"),
        u("converge_devices"),
        u("converge_edits"),
        u("converge_base_files"),
        u("budget_secs"),
        elapsed.as_secs_f64(),
        engines.len(),
        combos.len() / engines.len().max(1),
    ));
    s.push_str(
        "Each figure is shown with the baseline measured in the same run and the ratio figure / baseline \
         (**bold**). How each is measured: `crates/bench/src/measure.rs`.\n\n",
    );

    // §6 targets first.
    s.push_str("## DESIGN.md §6 targets\n\n");
    let checks: [(&str, CheckFn); 7] = [
        ("≤ 256 B written per tag assignment (header included)", |r, e, st| {
            let v = r.num("bytes", e, st, "one_edit");
            check(v, 256.0, false, opt(v, fmt_bytes))
        }),
        ("nothing written while nothing changes", |r, e, st| {
            let v = r.num("bytes", e, st, "idle_10_cycles");
            check(v, 0.0, false, opt(v, |b| format!("{b:.0} B in 10 idle cycles")))
        }),
        ("propagation p50 < 100 ms (watcher)", |r, e, st| {
            let v = r.num("propagation", e, st, "p50_ms");
            check(v, 100.0, true, opt(v, fmt_ms))
        }),
        ("idle pass over 10 peers reads no segment", |r, e, st| {
            let v = r.num("idle", e, st, "reads");
            check(v, 0.0, false, opt(v, |n| format!("{n:.0} reads")))
        }),
        ("cold open ≤ 1.2× raw engine load", |r, e, st| {
            let v = ratio(r.num("open", e, st, "ms"), r.num("open-raw", e, st, "ms"));
            check(v, 1.2, false, fmt_ratio(v))
        }),
        ("ingest ≤ 1.5× raw engine apply", |r, e, st| {
            let v = ratio(r.num("ingest", e, st, "ms"), r.num("ingest", e, st, "raw_ms"));
            check(v, 1.5, false, fmt_ratio(v))
        }),
        ("memory ≤ 1.3× raw engine (peak RSS after open)", |r, e, st| {
            let v = ratio(r.num("open", e, st, "peak_rss_kib"), r.num("open-raw", e, st, "peak_rss_kib"));
            check(v, 1.3, false, fmt_ratio(v))
        }),
    ];
    s.push_str(&targets(&checks, combos, r));
    s.push_str(&format!("{ANALYSIS_START}\n## Analysis\n\n(No analysis written yet.)\n{ANALYSIS_END}\n\n"));

    // 1. Build, snapshot, open, memory.
    s.push_str("## 1. Build W, snapshot, cold open, memory\n\n");
    s.push_str(
        "Build: every edit of the workload through the model on a replica, as an import writes it: in batches \
         of 500 edits (`Library::in_batch`), each committed to the store as one change before it returns; \
         unflushed edits written to the shared folder every 1 000 edits. Against the same \
         op batches written straight into the engine (raw API; op generation not timed). The model's calls get \
         their arguments (file ids, paths, metadata) made before the timer too, as an app holds them; what the \
         model derives from them (normalised paths, ids, checks) is timed. *Model, bare engine* \
         is the model on an engine without store or transport (in the `Indexed` layer a replica puts on its engine): it separates the model's own reads from the \
         store's cost.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "raw API",
        "model, bare engine",
        "model on replica",
        "replica / raw",
        "edits/s (replica)",
        "snapshot",
        "written during build",
    ]);
    for (e, st) in combos {
        let raw = r.num("build-raw", e, "", "ms");
        let bare = r.num("build-bare", e, "", "ms");
        let rep = r.num("build", e, st, "ms");
        let edits = r.num("build", e, st, "edits");
        t.row(vec![
            format!("{e} × {st}"),
            r.ms_cell("build-raw", e, "", "ms"),
            format!("{} ({})", r.ms_cell("build-bare", e, "", "ms"), fmt_ratio(ratio(bare, raw))),
            r.ms_cell("build", e, st, "ms"),
            fmt_ratio(ratio(rep, raw)),
            opt(edits.zip(rep).map(|(n, ms)| n / ms * 1000.0), |v| format!("{v:.0}")),
            opt(r.num("build", e, st, "snapshot_bytes"), fmt_bytes),
            format!(
                "{} in {} segments",
                opt(r.num("build", e, st, "segment_bytes"), fmt_bytes),
                opt(r.num("build", e, st, "segments"), |v| format!("{v:.0}"))
            ),
        ]);
    }
    s.push_str(&t.render());
    s.push_str(&format!(
        "\nCold open: `Replica::open` (store open and load, engine rebuild, checks on the shared folder) against \
         the raw engine reading and loading the same snapshot bytes; median of {OPEN_REPEATS} processes each, run \
         alternately. *Of which: store load* is `Store::load` of the compacted store, timed alone. *As the \
         import left it*: the store as the replica left it after the import (the log entries an open replays \
         are counted); *compacted*: after `Store::compact` with the engine's snapshot. Peak RSS (`VmHWM`) is taken \
         right after the open, and at the end of each build.\n\n"
    ));
    let mut t = Table::new(&[
        "engine × store",
        "open, as the import left it",
        "log entries replayed",
        "open, compacted",
        "of which: store load",
        "raw load",
        "compacted / raw",
        "as left / raw",
        "RSS open",
        "RSS raw load",
        "RSS ratio",
        "RSS build (replica / raw)",
    ]);
    for (e, st) in combos {
        let left = r.num("open-as-left", e, st, "ms");
        let open = r.num("open", e, st, "ms");
        let raw = r.num("open-raw", e, st, "ms");
        let rss = r.num("open", e, st, "peak_rss_kib");
        let rss_raw = r.num("open-raw", e, st, "peak_rss_kib");
        let brss = r.num("build", e, st, "peak_rss_kib");
        let brss_raw = r.num("build-raw", e, "", "peak_rss_kib");
        t.row(vec![
            format!("{e} × {st}"),
            r.ms_cell("open-as-left", e, st, "ms"),
            opt(r.num("compact", e, st, "log_entries_before"), |v| format!("{v:.0}")),
            opt(open, fmt_ms),
            opt(r.num("compact", e, st, "load_after_ms"), fmt_ms),
            opt(raw, fmt_ms),
            fmt_ratio(ratio(open, raw)),
            match (ratio(left, raw), r.timed_out("open-as-left", e, st), raw) {
                (None, Some(secs), Some(raw)) => format!("**> {:.0}×**", secs as f64 * 1000.0 / raw),
                (v, _, _) => fmt_ratio(v),
            },
            opt(rss, fmt_kib),
            opt(rss_raw, fmt_kib),
            fmt_ratio(ratio(rss, rss_raw)),
            format!("{} / {} = {}", opt(brss, fmt_kib), opt(brss_raw, fmt_kib), fmt_ratio(ratio(brss, brss_raw))),
        ]);
    }
    s.push_str(&t.render());

    // 2. Bytes.
    s.push_str(
        "\n## 2. Bytes written to the shared medium\n\n\
         Tag assignments through the model on the replica holding W, flushed to the folder (segment bytes, \
         84-byte header included), against the prototype, which wrote the whole document (`Engine::snapshot`) \
         every 10 s cycle whether or not anything changed.\n\n",
    );
    let mut t = Table::new(&["engine × store", "edits", "ours", "prototype", "prototype / ours"]);
    for (e, st) in combos {
        let rows: [(&str, &str, &str); 3] = [
            ("1 assignment, 1 cycle", "one_edit", "one_edit_prototype"),
            ("100 assignments, 1 per cycle", "hundred_edits_100_cycles", "hundred_edits_100_cycles_prototype"),
            ("100 assignments, 1 cycle", "hundred_edits_1_cycle", "hundred_edits_1_cycle_prototype"),
        ];
        for (label, ours, proto) in rows {
            let (o, pr) = (r.num("bytes", e, st, ours), r.num("bytes", e, st, proto));
            t.row(vec![
                format!("{e} × {st}"),
                label.into(),
                opt(o, fmt_bytes),
                opt(pr, fmt_bytes),
                fmt_ratio(ratio(pr, o)),
            ]);
        }
        let idle = r.num("bytes", e, st, "idle_10_cycles");
        let hour = r.num("bytes", e, st, "idle_hour_prototype");
        t.row(vec![
            format!("{e} × {st}"),
            "idle (ours: 10 cycles; prototype: 1 hour)".into(),
            opt(idle, fmt_bytes),
            opt(hour, fmt_bytes),
            "–".into(),
        ]);
    }
    s.push_str(&t.render());

    // 3. Ingest.
    s.push_str(
        "\n## 3. Ingest a peer's segment\n\n\
         A peer holding W writes its assignments as one segment; the device (holding W) runs one ingest pass \
         (list, read, verify, apply, store commit). Baseline: `Engine::apply_remote` of the same payload on an \
         engine that loaded the same state, run alternately with the ingests in one process. Median of 3 peers' \
         segments. The last two columns time two parts of an ingest alone: reading and decoding one segment, \
         and committing its payload into a scratch store of the same kind.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "edits",
        "segment",
        "ingest pass",
        "raw apply",
        "ratio",
        "of which: read + decode",
        "store commit",
    ]);
    for (e, st) in combos {
        let (ms, raw) = (r.num("ingest", e, st, "ms"), r.num("ingest", e, st, "raw_ms"));
        t.row(vec![
            format!("{e} × {st}"),
            opt(r.num("ingest", e, st, "edits"), |v| format!("{v:.0}")),
            opt(r.num("ingest", e, st, "segment_bytes"), fmt_bytes),
            opt(ms, fmt_ms),
            opt(raw, fmt_ms),
            fmt_ratio(ratio(ms, raw)),
            opt(r.num("ingest", e, st, "read_decode_ms"), fmt_ms),
            opt(r.num("ingest", e, st, "store_commit_ms"), fmt_ms),
        ]);
    }
    s.push_str(&t.render());

    // 4. Propagation.
    s.push_str(
        "\n## 4. Propagation through the folder, with the watcher\n\n\
         The device holding W runs its sync loop (`Replica::run`, folder watcher with its 50 ms debounce, the \
         production 30 s poll); a second device writes one assignment per segment. Latency: from the writer's \
         segment renamed into place to the device's `Applied` event; at most the preset's edits, within \
         the preset's time budget. Last column: the raw engine's apply of one such change on W, the engine's share.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "edits",
        "p50",
        "p99",
        "max",
        "timeouts (10 s)",
        "raw apply of one such change",
    ]);
    for (e, st) in combos {
        let n = |f: &str| r.num("propagation", e, st, f);
        t.row(vec![
            format!("{e} × {st}"),
            opt(n("edits"), |v| format!("{v:.0}")),
            opt(n("p50_ms"), fmt_ms),
            opt(n("p99_ms"), fmt_ms),
            opt(n("max_ms"), fmt_ms),
            opt(n("timeouts"), |v| format!("{v:.0}")),
            opt(n("raw_apply_ms"), fmt_ms),
        ]);
    }
    s.push_str(&t.render());

    // 5. Idle.
    s.push_str(
        "\n## 5. Idle sync pass\n\n\
         After one pass applied every peer's segments, ingest passes with nothing new are timed (median of 5) \
         and their segment reads counted. Baseline: the prototype's cycle, which reads and merges \
         (`apply_remote`) every peer's whole document (W here): the mean of the merges measured (at most 10, \
         within the preset's time budget) times 10.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "peer folders",
        "idle pass",
        "segment reads",
        "listings per pass",
        "prototype cycle",
        "merges measured",
        "prototype / ours",
    ]);
    for (e, st) in combos {
        let n = |f: &str| r.num("idle", e, st, f);
        t.row(vec![
            format!("{e} × {st}"),
            opt(n("peers"), |v| format!("{v:.0}")),
            opt(n("ms"), fmt_ms),
            opt(n("reads"), |v| format!("{v:.0}")),
            opt(n("lists_per_pass"), |v| format!("{v:.0}")),
            opt(n("prototype_ms"), fmt_ms),
            opt(n("prototype_merges"), |v| format!("{v:.0}")),
            fmt_ratio(ratio(n("prototype_ms"), n("ms"))),
        ]);
    }
    s.push_str(&t.render());

    // 6. Converge.
    s.push_str(
        "\n## 6. Many devices converge\n\n\
         Every device shares a small library, makes its edits offline (assignments, removals, renames, \
         recolours, annotations), then all sync loops start at once (watcher, 50 ms debounce, 5 s poll). \
         Timed until every device holds the same state; exports are then compared. Baseline: for each device, \
         raw `apply_remote` of every other device's segments, summed over devices.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "devices × edits",
        "converged",
        "time",
        "raw apply, summed",
        "ratio",
        "segments",
        "bytes",
    ]);
    for (e, st) in combos {
        let n = |f: &str| r.num("converge", e, st, f);
        let conv = r.get("converge", e, st).and_then(|v| v["converged"].as_bool());
        t.row(vec![
            format!("{e} × {st}"),
            format!(
                "{} × {}",
                opt(n("devices"), |v| format!("{v:.0}")),
                opt(n("edits_per_device"), |v| format!("{v:.0}"))
            ),
            match conv {
                Some(true) => "yes".into(),
                Some(false) => "**no**".into(),
                None => "–".into(),
            },
            opt(n("ms"), fmt_ms),
            opt(n("raw_apply_ms"), fmt_ms),
            fmt_ratio(ratio(n("ms"), n("raw_apply_ms"))),
            opt(n("segments"), |v| format!("{v:.0}")),
            opt(n("segment_bytes"), fmt_bytes),
        ]);
    }
    s.push_str(&t.render());

    // 7. Requests.
    s.push_str(
        "\n## 7. Requests to the shared medium, per transport\n\n\
         What one device asks of the medium (folder listings or change-feed queries, segment reads, writes) \
         with the idle-pass peers above, each holding two segments: per ingest pass with nothing new (mean of 5), \
         to flush one edit, and for the pass after one peer wrote one new segment — as `Transport` calls and, for \
         the Drive and Dropbox APIs, as the HTTP requests their in-repo emulators saw (folder lookups and \
         pagination included). The memory transport has a change feed, as an HTTP provider does; the folder \
         transport lists every peer folder. *Write → apply*: with the device's sync loop running, the time from \
         a peer's segment being written to its apply (median and slowest of up to 20): the folder watcher, \
         Dropbox's longpoll, Drive's changes feed polled every second.\n\n",
    );
    let mut t = Table::new(&[
        "engine × store",
        "transport",
        "change feed",
        "peers",
        "idle pass",
        "of which reads",
        "flushed edit",
        "pass after one new segment",
        "HTTP: idle / edit / after one",
        "write → apply p50 (max)",
    ]);
    for (e, st) in combos {
        let Some(v) = r.get("requests", e, st) else { continue };
        let peers = v["peers"].as_u64().map_or("–".into(), |p| p.to_string());
        for tr in v["transports"].as_array().into_iter().flatten() {
            let f = |k: &str| tr[k].as_f64().map_or("–".into(), |x| format!("{x:.0}"));
            t.row(vec![
                format!("{e} × {st}"),
                tr["transport"].as_str().unwrap_or("?").to_owned(),
                if tr["changes_feed"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
                peers.clone(),
                f("idle_pass"),
                f("idle_reads"),
                f("flushed_edit"),
                f("pass_after_one_segment"),
                match tr["http"].as_object() {
                    Some(h) => {
                        let g = |k: &str| h.get(k).and_then(|v| v.as_f64()).map_or("–".into(), |x| format!("{x:.0}"));
                        format!("{} / {} / {}", g("idle_pass"), g("flushed_edit"), g("pass_after_one_segment"))
                    }
                    None => "–".into(),
                },
                match (tr["propagation_p50_ms"].as_f64(), tr["propagation_max_ms"].as_f64()) {
                    (Some(p50), Some(max)) => format!("{} ({})", fmt_ms(p50), fmt_ms(max)),
                    _ => "–".into(),
                },
            ]);
        }
    }
    s.push_str(&t.render());

    // 8. History growth.
    s.push_str(
        "\n## 8. History growth\n\n\
         What each engine keeps of the past: the snapshot after many puts to the same three fields of one \
         record, and after records were created, deleted and created again (same ids, same fields), each \
         against a fresh document holding only the final state. Changes were taken every 100 writes, as \
         flushes would.\n\n",
    );
    let mut t = Table::new(&[
        "engine",
        "overwrites",
        "snapshot",
        "fresh document",
        "per overwrite",
        "records re-added",
        "snapshot",
        "fresh document",
        "ratio",
    ]);
    for e in engines {
        let Some(v) = r.get("history", e, "") else { continue };
        let n = |k: &str| v[k].as_f64();
        let per = match (n("overwrite_snapshot"), n("overwrite_baseline"), n("overwrites")) {
            (Some(a), Some(b), Some(k)) if k > 0.0 => format!("{:.1} B", (a - b) / k),
            _ => "–".into(),
        };
        t.row(vec![
            e.clone(),
            opt(n("overwrites"), |x| format!("{x:.0}")),
            opt(n("overwrite_snapshot"), fmt_bytes),
            opt(n("overwrite_baseline"), fmt_bytes),
            per,
            opt(n("records"), |x| format!("{x:.0}")),
            opt(n("readd_snapshot"), fmt_bytes),
            opt(n("readd_baseline"), fmt_bytes),
            fmt_ratio(ratio(n("readd_snapshot"), n("readd_baseline"))),
        ]);
    }
    s.push_str(&t.render());

    s.push_str(&prototype_section(engines, combos, r));
    s.push_str(&join_section(combos, r));
    s.push('\n');
    s.push_str(&cli::section(combos, r));
    s.push('\n');
    s.push_str(&node_section(m, r));

    let failed: Vec<String> = r
        .map
        .iter()
        .filter_map(|((step, e, st), _)| r.failed(step, e, st).map(|err| format!("- `{step}` {e} {st}: {err}")))
        .collect();
    let stopped: Vec<String> = r
        .map
        .iter()
        .filter_map(|((step, e, st), _)| {
            r.timed_out(step, e, st).map(|secs| format!("- `{step}` {e} {st}: stopped after {secs} s"))
        })
        .collect();
    if !stopped.is_empty() {
        s.push_str("\n## Steps stopped at their time limit\n\n");
        s.push_str(&stopped.join("\n"));
        s.push('\n');
    }
    if !failed.is_empty() {
        s.push_str("\n## Steps that failed\n\n");
        s.push_str(&failed.join("\n"));
        s.push('\n');
    }
    s.push_str(
        "\nMicro-benchmarks of the segment codec and each engine adapter: `cargo bench -p onefolder-bench` \
         (divan; not part of this report).\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerun_keeps_the_hand_written_analysis() {
        let fresh = format!("# B\n{ANALYSIS_START}\n(none)\n{ANALYSIS_END}\n| new table |\n");
        let old = format!("# B\n{ANALYSIS_START}\nWhy yrs wins.\n{ANALYSIS_END}\n| old table |\n");
        let merged = keep_analysis(&fresh, &old);
        assert!(merged.contains("Why yrs wins.") && merged.contains("| new table |"), "{merged}");
        assert!(!merged.contains("old table") && !merged.contains("(none)"));
        assert_eq!(keep_analysis(&fresh, ""), fresh);
    }

    #[test]
    fn the_prototype_section_compares_and_checks() {
        let mut r = Results::default();
        let mut put = |step: &str, engine: &str, store: &str, v: Value| {
            r.map.insert((step.into(), engine.into(), store.into()), Outcome::Ok(v));
        };
        put("build", "yrs", "sqlite", serde_json::json!({ "snapshot_bytes": 50_000_000.0 }));
        put("open", "yrs", "sqlite", serde_json::json!({ "ms": 400.0, "peak_rss_kib": 307_200.0 }));
        put("bytes", "yrs", "sqlite", serde_json::json!({ "one_edit": 150.0 }));
        put(
            "build-prototype",
            "yrs",
            "",
            serde_json::json!({ "records": 102_002, "ms": 150.0, "snapshot_bytes": 40_000_000.0, "assignment_bytes": 460.0 }),
        );
        put(
            "open-prototype",
            "yrs",
            "",
            serde_json::json!({ "ms": 800.0, "peak_rss_kib": 327_680.0, "tag_query_tag": "City 24",
                "tag_query_subtree": 65, "tag_query_files": 8290, "tag_query_ms": 170.0 }),
        );
        let combos = vec![("yrs".to_owned(), "sqlite".to_owned()), ("automerge".to_owned(), "sqlite".to_owned())];
        let s = prototype_section(&["yrs".into(), "automerge".into()], &combos, &r);
        assert!(s.contains("## 9. Against the prototype's layout"), "{s}");
        // Snapshot 1.25× (missed), open 0.50×, RSS 0.94×, 150 B per assignment (met).
        assert!(s.contains("| snapshot ≤ 1.0× the prototype's | **not met** (**1.25×**) | not measured (–) |"), "{s}");
        assert!(s.contains("| met (**0.50×**) |") && s.contains("| met (**0.94×**) |"), "{s}");
        assert!(s.contains("met (150 B vs 460 B)"), "{s}");
        assert!(s.contains("- snapshot ≤ 1.0× the prototype's — yrs × sqlite: 1.25×"), "{s}");
        assert!(s.contains("| 50.0 MB / 40.0 MB | **1.25×** | 400 ms / 800 ms | **0.50×** |"), "{s}");
        assert!(
            s.contains("| yrs | 102002 | 150 ms | 40.0 MB | 800 ms | 320 MiB | City 24 (65 tags) | 8290 | 170 ms |")
        );
        assert!(s.contains("| automerge | – | – | – | – | – | – (– tags) | – | – |"), "{s}");
    }

    fn test_machine() -> Machine {
        Machine {
            cores: "2".into(),
            cpu: "Test CPU".into(),
            memory: "24 GiB".into(),
            date: "2026-12-02 10:00 UTC".into(),
            commit: "abc1234".into(),
            rustc: "rustc".into(),
        }
    }

    #[test]
    fn the_node_section_shows_both_sides_and_their_ratios() {
        let mut r = Results::default();
        let v = serde_json::json!({
            "step": NODE_STEP, "preset": "full", "date": "2026-12-02 11:00 UTC", "commit": "def5678",
            "node": "v20.20.2", "yjs": "13.6.33", "engine": "yrs", "store": "sqlite", "runs": 5,
            "files": 100000, "tags": 2000, "locations": 2, "assignments": 300000,
            "search_tag": "Work 0", "search_files": 2293, "fetch_files": 100000,
            "baseline": { "build_ms": 977.0, "update_bytes": 41_597_098, "load_ms": 1653.0,
                "fetch": { "ms": 700.0, "first_ms": 733.0 }, "search": { "ms": 120.0, "first_ms": 117.0 } },
            "ours": { "populate_ms": 600_000.0, "open_ms": 2600.0, "open_library_ms": 2500.0,
                "populate": { "locations_ms": 5.0, "tags_ms": 900.0, "create_files_ms": 300_000.0, "save_files_ms": 299_095.0 },
                "fetch": { "ms": 350.0, "first_ms": 400.0 }, "search": { "ms": 12.0, "first_ms": 150.0 } },
            "peak_rss_kib": 2_097_152,
        });
        r.map.insert((NODE_STEP.into(), String::new(), String::new()), Outcome::Ok(v));
        let s = node_section(&test_machine(), &r);
        assert!(s.starts_with(NODE_START) && s.ends_with(&format!("{NODE_END}\n")), "{s}");
        assert!(s.contains("## Node binding: fetchFiles and searchFiles (issue 16)"), "{s}");
        assert!(s.contains("- **Measured:** 2026-12-02 11:00 UTC · **commit:** `def5678` · node v20.20.2"), "{s}");
        assert!(s.contains("- **Machine:** 2 cores, Test CPU, 24 GiB RAM"), "{s}");
        assert!(
            s.contains("| `fetchFiles('dateAdded', Desc)` | 100000 | 700 ms | 350 ms | **0.50×** | 733 ms / 400 ms |")
        );
        assert!(s.contains("| 2293 | 120 ms | 12.0 ms | **0.10×** | 117 ms / 150 ms |"), "{s}");
        assert!(s.contains("`Library.open` 2500 ms) | – | 1653 ms | 2600 ms | **1.57×** | – |"), "{s}");
        assert!(s.contains("not compared): 600.0 s — locations 5.0 ms, tags 900 ms"), "{s}");
        assert!(s.contains("both sides): 2048 MiB."), "{s}");

        let mut failed = Results::default();
        failed.map.insert((NODE_STEP.into(), String::new(), String::new()), Outcome::Failed("boom".into()));
        assert!(node_section(&test_machine(), &failed).contains("**Not measured: the step failed.** `boom`"));
        let skipped = Results { node_not_run: Some("not run: `node` is not on the PATH".into()), ..Results::default() };
        assert!(node_section(&test_machine(), &skipped).contains("Not measured in this run: not run: `node`"));
    }

    #[test]
    fn the_node_section_is_replaced_in_place() {
        let section = |x: &str| format!("{NODE_START}\n## Node\n{x}\n{NODE_END}\n");
        let report = format!(
            "# B\n\n## 9. P\n\n{}\n## Steps that failed\n\nMicro-benchmarks of the segment codec\n",
            section("old")
        );
        let replaced = replace_node_section(&report, &section("new"));
        assert_eq!(replaced, report.replace("old", "new"));
        // A report written before the section existed: it goes before the closing line.
        let older = "# B\n\n## 7. R\n\n| t |\n\nMicro-benchmarks of the segment codec: `cargo bench`.\n";
        let added = replace_node_section(older, &section("new"));
        assert_eq!(
            added,
            format!(
                "# B\n\n## 7. R\n\n| t |\n\n{}\nMicro-benchmarks of the segment codec: `cargo bench`.\n",
                section("new")
            )
        );
        assert_eq!(replace_node_section(&added, &section("newer")), added.replace("new", "newer"));
        assert_eq!(replace_node_section("", &section("x")), format!("# Benchmarks\n\n{}", section("x")));
        assert_eq!(replace_node_section("# B\n", &section("x")), format!("# B\n\n{}", section("x")));
    }

    #[test]
    fn ratios_and_sizes_print_readably() {
        assert_eq!(fmt_ratio(ratio(Some(3.0), Some(2.0))), "**1.50×**");
        assert_eq!(fmt_ratio(ratio(Some(1.0), Some(0.0))), "–");
        assert_eq!(fmt_bytes(177.0), "177 B");
        assert_eq!(fmt_bytes(62_900_000.0), "62.9 MB");
        assert_eq!(fmt_ms(12_345.0), "12.3 s");
    }
}

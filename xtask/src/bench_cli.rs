//! The `cli-query` step of `cargo xtask bench` (issue 14): open the library and answer one tag
//! query through the command line, `onefolder-sync files --tag X --recursive --json` (release
//! build), against a Node process that loads the prototype's document of the same library with
//! npm `yjs` and answers the same query in memory — each a whole process, timed from spawn to
//! exit (wall clock), with its peak RSS (`ru_maxrss` of `wait4`).
//!
//! Prepared once per run ([`prepare`]): the CLI built in release, the workload dumped
//! (`onefolder-bench dump`) and the prototype's document written from the dump by
//! `crates/node/bench/prototype-doc.js` (`Y.encodeStateAsUpdate`), npm `yjs` from a pinned
//! install already there (`crates/node/node_modules`, else `target/interop/node/node_modules`,
//! else `npm ci` in `crates/node`). Then per engine × store ([`step`]), on the replica that
//! `build` and `compact` left: `onefolder-bench cli-setup` writes the CLI's `state.json` and
//! names the tag (the level-1 tag with the most files in its subtree); one untimed run of each
//! side (it records the device id in `state.json` and warms the page cache for both), then
//! [`RUNS`] runs of each, the two sides alternating; the medians are reported. Every run of
//! both sides must print as many files as the workload says the subtree holds, else the step
//! fails. The query only reads: the steps after it see the replica as it was.
//!
//! `cargo xtask bench --cli-only` runs just this step on the replicas of an earlier run that
//! are still in `target/bench-work/<preset>/` (building them first when they are not there)
//! and puts its section in place of the one of the existing report (see [`only`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{
    Check, CheckFn, Options, Outcome, Results, Runner, Table, check, fmt_kib, fmt_ms, fmt_ratio, median, node_dir, opt,
    ratio, step_timeout, target_dir, targets,
};
use crate::project_root;

/// Label of the step in [`Results`].
pub(super) const STEP: &str = "cli-query";
/// Timed runs of each side (the median is reported).
pub(super) const RUNS: usize = 3;
/// Markers around the section, so that `--cli-only` can replace it.
pub(super) const START: &str = "<!-- cli-query:start -->";
/// See [`START`].
pub(super) const END: &str = "<!-- cli-query:end -->";

/// What the step needs, made once per run.
pub(super) struct Ready {
    /// The `onefolder-sync` binary, release build.
    cli: PathBuf,
    /// The prototype's document of the workload (`Y.encodeStateAsUpdate`).
    doc: PathBuf,
    /// Its size.
    doc_bytes: u64,
    /// The npm `yjs` package directory the Node side loads.
    yjs: PathBuf,
    /// `node --version`.
    node: String,
    /// The version of that `yjs`.
    yjs_version: String,
}

/// The outcome of [`prepare`].
pub(super) enum Prepared {
    /// Everything is there.
    Ready(Ready),
    /// The step does not run; why (no `node`, `--no-node`).
    NotRun(String),
    /// Preparing failed: every pair's step is a crashed step.
    Failed(String),
}

/// Where a pinned npm `yjs` is installed already, else `npm ci` in `crates/node` (its
/// package-lock pins it).
fn find_yjs() -> Result<PathBuf> {
    let candidates = [
        node_dir().join("node_modules").join("yjs"),
        target_dir().join("interop").join("node").join("node_modules").join("yjs"),
    ];
    if let Some(found) = candidates.iter().find(|p| p.join("package.json").is_file()) {
        return Ok(found.clone());
    }
    super::run_in(&node_dir(), "npm", &["ci", "--no-audit", "--no-fund"])?;
    let installed = node_dir().join("node_modules").join("yjs");
    if !installed.join("package.json").is_file() {
        bail!("`npm ci` in {} installed no yjs", node_dir().display());
    }
    Ok(installed)
}

/// The script `name` of `crates/node/bench/`.
fn script(name: &str) -> PathBuf {
    node_dir().join("bench").join(name)
}

/// Node's options for the untimed scripts that hold the whole workload as JSON.
const LARGE_HEAP: &str = "--max-old-space-size=8192";

fn try_prepare(bench_bin: &Path, preset: &str, work: &Path) -> Result<Ready> {
    let node = super::capture("node", &["--version"]).context("node --version")?;
    let yjs = find_yjs()?;
    let package: Value = serde_json::from_str(&std::fs::read_to_string(yjs.join("package.json"))?)?;
    let yjs_version = package["version"].as_str().unwrap_or("?").to_owned();
    crate::run("cargo", &["build", "-j2", "--release", "-p", "onefolder-sync"])?;
    let cli = target_dir().join("release").join(if cfg!(windows) { "onefolder-sync.exe" } else { "onefolder-sync" });
    let dir = work.join(STEP);
    std::fs::create_dir_all(&dir)?;
    let dump = dir.join("workload.json");
    let out = Command::new(bench_bin)
        .args(["dump", "--preset", preset, "--out"])
        .arg(&dump)
        .current_dir(project_root())
        .output()
        .context("running onefolder-bench dump")?;
    if !out.status.success() {
        bail!("onefolder-bench dump failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let doc = dir.join("prototype.yjs");
    let out = Command::new("node")
        .arg(LARGE_HEAP)
        .arg(script("prototype-doc.js"))
        .arg(&dump)
        .arg(&doc)
        .env("ONEFOLDER_BENCH_YJS", &yjs)
        .current_dir(node_dir())
        .output()
        .context("running prototype-doc.js")?;
    if !out.status.success() {
        bail!("prototype-doc.js failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let _ = std::fs::remove_file(&dump);
    let doc_bytes = std::fs::metadata(&doc)?.len();
    Ok(Ready { cli, doc, doc_bytes, yjs, node, yjs_version })
}

/// Prepares the step for a run of `preset` (see the module documentation); `run` is false
/// for `--no-node`.
pub(super) fn prepare(bench_bin: &Path, preset: &str, work: &Path, run: bool) -> Prepared {
    if !run {
        return Prepared::NotRun("skipped (`--no-node`)".into());
    }
    if super::capture("node", &["--version"]).is_none() {
        eprintln!("== bench: {STEP} skipped: node not found");
        return Prepared::NotRun("skipped: node not found".into());
    }
    if !cfg!(unix) {
        return Prepared::NotRun("skipped: the peak RSS of a child process is measured on Unix only".into());
    }
    eprintln!("== bench: preparing {STEP} (the CLI in release, the prototype's document)");
    match try_prepare(bench_bin, preset, work) {
        Ok(ready) => Prepared::Ready(ready),
        Err(e) => Prepared::Failed(format!("preparing {STEP}: {e:#}")),
    }
}

/// One run of a whole process.
#[derive(Clone, Debug)]
struct Run {
    ms: f64,
    rss_kib: f64,
    /// Elements of the JSON array it printed.
    found: usize,
}

/// Runs `cmd` to its exit, timed from spawn to exit, with its peak RSS (`wait4`); its stdout
/// must be a JSON array.
#[cfg(unix)]
fn measure(mut cmd: Command, timeout: Duration) -> Result<Run> {
    use std::io::Read;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (status, usage, elapsed) = loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own child, not reaped yet; the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage, started.elapsed());
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("wait4");
            }
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("stopped after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
        bail!("exited with status {status:#x}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    let printed: Value = serde_json::from_slice(&stdout).context("its output is not JSON")?;
    let found = printed.as_array().context("its output is not a JSON array")?.len();
    // Linux reports KiB, macOS bytes.
    let rss_kib = if cfg!(target_os = "macos") { usage.ru_maxrss as f64 / 1024.0 } else { usage.ru_maxrss as f64 };
    Ok(Run { ms: elapsed.as_secs_f64() * 1000.0, rss_kib, found })
}

#[cfg(not(unix))]
fn measure(_cmd: Command, _timeout: Duration) -> Result<Run> {
    bail!("the peak RSS of a child process is measured on Unix only")
}

/// The two sides' commands for a pair whose CLI state is `state`, querying `tag`.
fn commands(ready: &Ready, state: &str, tag: &str) -> [Command; 2] {
    let mut ours = Command::new(&ready.cli);
    ours.args(["--state", state, "files", "--tag", tag, "--recursive", "--json"])
        .env_remove("ONEFOLDER_SYNC_LIBRARY")
        .env("ONEFOLDER_SYNC_WAIT", "0")
        .current_dir(project_root());
    let mut proto = Command::new("node");
    proto.arg(script("prototype-query.js")).arg(&ready.doc).arg(tag).env("ONEFOLDER_BENCH_YJS", &ready.yjs);
    proto.current_dir(node_dir());
    [ours, proto]
}

/// Runs the step on one pair; see the module documentation.
fn measure_pair(runner: &Runner, ready: &Ready, engine: &str, store: &str, dir: &Path) -> Result<Value> {
    let out = Command::new(&runner.bin)
        .args(["cli-setup", "--engine", engine, "--store", store, "--preset", runner.preset, "--dir"])
        .arg(dir)
        .current_dir(project_root())
        .output()
        .context("running onefolder-bench cli-setup")?;
    if !out.status.success() {
        bail!("onefolder-bench cli-setup failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let setup: Value = serde_json::from_slice(&out.stdout).context("reading cli-setup's line")?;
    let (state, tag) = (setup["state_dir"].as_str().unwrap_or_default(), setup["tag_id"].as_str().unwrap_or_default());
    let expected = setup["files"].as_u64().context("cli-setup names no file count")? as usize;
    let timeout = step_timeout(runner.preset, STEP);
    let sides = ["ours (onefolder-sync)", "the prototype (node)"];
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for k in 0..=RUNS {
        for (i, cmd) in commands(ready, state, tag).into_iter().enumerate() {
            let run = measure(cmd, timeout).with_context(|| format!("{} on tag {tag}", sides[i]))?;
            if run.found != expected {
                bail!(
                    "{} found {} files for tag {tag} (recursive), the workload {expected}; the other side {}",
                    sides[i],
                    run.found,
                    runs[1 - i].last().map_or("has not run yet".to_owned(), |r| format!("found {}", r.found))
                );
            }
            // Run 0 is the warm-up.
            if k > 0 {
                runs[i].push(run);
            }
        }
    }
    let med = |i: usize, f: fn(&Run) -> f64| median(&mut runs[i].iter().map(f).collect::<Vec<_>>());
    Ok(json!({
        "step": STEP, "engine": engine, "store": store, "preset": runner.preset,
        "tag": setup["tag"], "tag_id": tag, "subtree": setup["subtree"], "files": expected,
        "ours_found": runs[0][0].found, "prototype_found": runs[1][0].found,
        "ours_ms": med(0, |r| r.ms), "ours_rss_kib": med(0, |r| r.rss_kib),
        "prototype_ms": med(1, |r| r.ms), "prototype_rss_kib": med(1, |r| r.rss_kib),
        "runs": RUNS, "node": ready.node, "yjs": ready.yjs_version, "doc_bytes": ready.doc_bytes,
    }))
}

/// The step for one pair, on the replica in `dir`; recorded in `results` under [`STEP`].
pub(super) fn step(
    runner: &mut Runner,
    results: &mut Results,
    prepared: &Prepared,
    engine: &str,
    store: &str,
    dir: &Path,
) {
    runner.done += 1;
    eprint!("[{:>2}/{}] {:<18} {STEP:<15} … ", runner.done, runner.total, format!("{engine}×{store}"));
    let started = Instant::now();
    let outcome = match prepared {
        Prepared::NotRun(why) => {
            eprintln!("{why}");
            results.cli_not_run = Some(why.clone());
            return;
        }
        Prepared::Failed(e) => Outcome::Failed(e.clone()),
        Prepared::Ready(ready) => match measure_pair(runner, ready, engine, store, dir) {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
    };
    super::report_outcome(&outcome, started);
    if let Outcome::Failed(e) = &outcome {
        results.failures.push(format!("{engine}×{store} {STEP}: {e}"));
    }
    results.map.insert((STEP.into(), engine.into(), store.into()), outcome);
}

/// The section of the report, between [`START`] and [`END`].
pub(super) fn section(combos: &[(String, String)], r: &Results) -> String {
    let mut s = format!("{START}\n## 11. Open + one tag query through the CLI, against the prototype in Node\n\n");
    s.push_str(&format!(
        "Issue 14: a user opens the library and asks for one tag subtree. Ours: the release `onefolder-sync files \
         --tag ID --recursive --json` on the replica `build` and `compact` left (`--state`: its store, with the \
         `state.json` of `onefolder-bench cli-setup`). The prototype: `node crates/node/bench/prototype-query.js \
         DOC ID`, which loads the prototype's document of the same library (one `Y.Doc`, root maps `files`, \
         `tags`, `locations`, `searches`, one whole plain record per id, written once from `onefolder-bench dump` \
         with `Y.encodeStateAsUpdate`) with `Y.applyUpdate` of the file's bytes, takes the subtree from the tag \
         records' `subTags`, then every file record's `tags`, as the prototype did. Both print the files found as \
         a JSON array. The tag is the level-1 tag with the most files in its subtree. Each whole process is timed \
         from spawn to exit (wall clock) with its peak RSS (`ru_maxrss`); one untimed run of each, then the median \
         of {RUNS} runs each, the two sides alternating. Both must print the number of files the workload holds \
         under the tag, else the step fails. Ratios are ours / the prototype's.\n\n"
    ));
    if !combos.iter().any(|(e, st)| r.map.contains_key(&(STEP.to_owned(), e.clone(), st.clone()))) {
        match &r.cli_not_run {
            Some(why) => s.push_str(&format!("Not measured in this run: {why}.\n")),
            None => s.push_str("Not measured in this run.\n"),
        }
        s.push_str(&format!("{END}\n"));
        return s;
    }
    let checks: [(&str, CheckFn); 2] = [
        ("open + tag query ≤ 1.0× the prototype's time", |r, e, st| {
            let v = ratio(r.num(STEP, e, st, "ours_ms"), r.num(STEP, e, st, "prototype_ms"));
            check(v, 1.0, false, fmt_ratio(v))
        }),
        ("open + tag query ≤ 1.5× the prototype's memory (peak RSS)", |r, e, st| -> Check {
            let v = ratio(r.num(STEP, e, st, "ours_rss_kib"), r.num(STEP, e, st, "prototype_rss_kib"));
            check(v, 1.5, false, fmt_ratio(v))
        }),
    ];
    s.push_str(&targets(&checks, combos, r));
    let mut t = Table::new(&[
        "engine × store",
        "tag (subtree)",
        "files found: ours / prototype",
        "time: ours / prototype",
        "ratio",
        "peak RSS: ours / prototype",
        "ratio",
    ]);
    let mut versions = None;
    for (e, st) in combos {
        let n = |k: &str| r.num(STEP, e, st, k);
        let v = r.get(STEP, e, st);
        if let Some(v) = v {
            versions.get_or_insert_with(|| {
                format!(
                    "node {}, npm yjs {}; the prototype's document: {}",
                    v["node"].as_str().unwrap_or("?"),
                    v["yjs"].as_str().unwrap_or("?"),
                    opt(v["doc_bytes"].as_f64(), super::fmt_bytes)
                )
            });
        }
        let time = match (n("ours_ms"), n("prototype_ms"), r.timed_out(STEP, e, st)) {
            (None, None, Some(secs)) => format!("> {secs} s (stopped)"),
            (o, p, _) => format!("{} / {}", opt(o, fmt_ms), opt(p, fmt_ms)),
        };
        t.row(vec![
            format!("{e} × {st}"),
            match v {
                Some(v) => {
                    format!("{} ({} tags)", v["tag"].as_str().unwrap_or("?"), opt(n("subtree"), |x| format!("{x:.0}")))
                }
                None => "–".into(),
            },
            format!(
                "{} / {}",
                opt(n("ours_found"), |x| format!("{x:.0}")),
                opt(n("prototype_found"), |x| format!("{x:.0}"))
            ),
            time,
            fmt_ratio(ratio(n("ours_ms"), n("prototype_ms"))),
            format!("{} / {}", opt(n("ours_rss_kib"), fmt_kib), opt(n("prototype_rss_kib"), fmt_kib)),
            fmt_ratio(ratio(n("ours_rss_kib"), n("prototype_rss_kib"))),
        ]);
    }
    s.push_str(&t.render());
    if let Some(versions) = versions {
        s.push_str(&format!("\n{versions}.\n"));
    }
    s.push_str(&format!("{END}\n"));
    s
}

/// `report` with its section (between [`START`] and [`END`]) replaced by `section`; a report
/// without one gets it before the Node binding's section (or its closing micro-benchmarks
/// line, or at the end), an empty one a title and the section.
pub(super) fn replace_section(report: &str, section: &str) -> String {
    if let Some(a) = report.find(START)
        && let Some(b) = report[a..].find(END).map(|b| a + b + END.len())
    {
        let rest = report[b..].strip_prefix('\n').unwrap_or(&report[b..]);
        return format!("{}{section}{rest}", &report[..a]);
    }
    if report.trim().is_empty() {
        return format!("# Benchmarks\n\n{section}");
    }
    match report
        .find(super::NODE_START)
        .or_else(|| report.rfind("\nMicro-benchmarks of the segment codec").map(|i| i + 1))
    {
        Some(i) => format!("{}{section}\n{}", &report[..i], &report[i..]),
        None => format!("{}\n\n{section}", report.trim_end()),
    }
}

/// `--cli-only`: this step alone on the replicas in `target/bench-work/<preset>/` of the pairs
/// asked for (default yrs × sqlite), each built (`build`, `compact`) first when it is not
/// there or its step fails on it; the section replaces the one of the existing report.
pub(super) fn only(opts: &Options) -> Result<()> {
    let bin = super::build_bench_binary()?;
    let work = target_dir().join("bench-work").join(opts.preset);
    std::fs::create_dir_all(&work)?;
    let or = |v: &[String], d: &str| if v.is_empty() { vec![d.to_owned()] } else { v.to_vec() };
    let combos: Vec<(String, String)> = or(&opts.engines, "yrs")
        .into_iter()
        .flat_map(|e| or(&opts.stores, "sqlite").into_iter().map(move |s| (e.clone(), s)))
        .collect();
    let mut runner = Runner { bin, preset: opts.preset, total: combos.len(), done: 0 };
    let prepared = prepare(&runner.bin, opts.preset, &work, opts.node != super::NodeMode::Skip);
    let mut results = Results::default();
    for (engine, store) in &combos {
        let dir = work.join(format!("{engine}-{store}"));
        let built = |dir: &Path| dir.join("library").join("onefolder_tags").join("library.json").is_file();
        let mut rebuilt = false;
        if !built(&dir) {
            rebuild(&mut runner, &mut results, engine, store, &dir)?;
            rebuilt = true;
        }
        step(&mut runner, &mut results, &prepared, engine, store, &dir);
        if !rebuilt && matches!(prepared, Prepared::Ready(_)) && results.failed(STEP, engine, store).is_some() {
            eprintln!("== bench: {STEP} failed on the replica there (an older format?): building it again");
            results.failures.pop();
            rebuild(&mut runner, &mut results, engine, store, &dir)?;
            step(&mut runner, &mut results, &prepared, engine, store, &dir);
        }
    }
    let section = section(&combos, &results);
    let previous = std::fs::read_to_string(&opts.out).unwrap_or_default();
    if let Some(parent) = opts.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&opts.out, replace_section(&previous, &section))
        .with_context(|| format!("writing {}", opts.out.display()))?;
    println!("{section}");
    eprintln!("== bench: wrote the {STEP} section of {}", opts.out.display());
    if !results.failures.is_empty() {
        bail!("{} bench step(s) crashed:\n  {}", results.failures.len(), results.failures.join("\n  "));
    }
    Ok(())
}

/// `build` and `compact` of one pair into `dir`, as a full run makes them.
fn rebuild(runner: &mut Runner, results: &mut Results, engine: &str, store: &str, dir: &Path) -> Result<()> {
    runner.total += 2;
    for label in ["build", "compact"] {
        match runner.step(label, engine, store, dir) {
            Outcome::Ok(v) => {
                results.map.insert((label.into(), engine.into(), store.into()), Outcome::Ok(v));
            }
            _ => bail!("{label} of {engine}×{store} in {} failed", dir.display()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_section_shows_both_sides_checks_the_targets_and_is_replaced_in_place() {
        let mut r = Results::default();
        let v = json!({
            "step": STEP, "engine": "yrs", "store": "sqlite", "tag": "City 24", "tag_id": "abc", "subtree": 65,
            "files": 8290, "ours_found": 8290, "prototype_found": 8290, "ours_ms": 900.0,
            "ours_rss_kib": 409_600.0, "prototype_ms": 1200.0, "prototype_rss_kib": 204_800.0, "runs": 3,
            "node": "v20.20.2", "yjs": "13.6.33", "doc_bytes": 41_600_000,
        });
        r.map.insert((STEP.into(), "yrs".into(), "sqlite".into()), Outcome::Ok(v));
        r.map.insert((STEP.into(), "automerge".into(), "sqlite".into()), Outcome::Failed("boom".into()));
        let combos = vec![("yrs".to_owned(), "sqlite".to_owned()), ("automerge".to_owned(), "sqlite".to_owned())];
        let s = section(&combos, &r);
        assert!(s.starts_with(START) && s.ends_with(&format!("{END}\n")), "{s}");
        // Time 0.75× (met), memory 2.00× (missed).
        assert!(
            s.contains("| open + tag query ≤ 1.0× the prototype's time | met (**0.75×**) | not measured (–) |"),
            "{s}"
        );
        assert!(s.contains("| **not met** (**2.00×**) |"), "{s}");
        assert!(s.contains("- open + tag query ≤ 1.5× the prototype's memory (peak RSS) — yrs × sqlite: 2.00×"), "{s}");
        assert!(
            s.contains("| yrs × sqlite | City 24 (65 tags) | 8290 / 8290 | 900 ms / 1200 ms | **0.75×** | 400 MiB / 200 MiB | **2.00×** |"),
            "{s}"
        );
        assert!(s.contains("| automerge × sqlite | – | – / – | – / – | – | – / – | – |"), "{s}");
        assert!(s.contains("node v20.20.2, npm yjs 13.6.33; the prototype's document: 41.6 MB."), "{s}");

        let skipped = Results { cli_not_run: Some("skipped: node not found".into()), ..Results::default() };
        let s = section(&combos, &skipped);
        assert!(s.contains("Not measured in this run: skipped: node not found.\n"), "{s}");
        assert!(!s.contains("| target |"), "{s}");

        let wrap = |x: &str| format!("{START}\n## 11\n{x}\n{END}\n");
        let report = format!(
            "# B\n\n## 10. J\n\n{}\n{}\nN\n{}\n",
            wrap("old"),
            super::super::NODE_START,
            super::super::NODE_END
        );
        assert_eq!(replace_section(&report, &wrap("new")), report.replace("old", "new"));
        let older = format!("# B\n\n## 10. J\n\n{}\nN\n{}\n", super::super::NODE_START, super::super::NODE_END);
        let added = replace_section(&older, &wrap("new"));
        assert_eq!(added, older.replace("<!-- node:start", &format!("{}\n<!-- node:start", wrap("new"))));
        assert_eq!(replace_section(&added, &wrap("newer")), added.replace("new", "newer"));
        let plain = "# B\n\n| t |\n\nMicro-benchmarks of the segment codec: x.\n";
        assert_eq!(
            replace_section(plain, &wrap("x")),
            format!("# B\n\n| t |\n\n{}\nMicro-benchmarks of the segment codec: x.\n", wrap("x"))
        );
        assert_eq!(replace_section("", &wrap("x")), format!("# Benchmarks\n\n{}", wrap("x")));
    }
}

//! `cargo xtask interop`: JavaScript Yjs (npm `yjs`, pinned to 13.6.33 by `xtask/interop/`'s
//! `package.json` and `package-lock.json`) and the yrs engine read the same records from each
//! other's bytes, for delta segments and for snapshots, both ways.
//!
//! The Node project `xtask/interop/` is copied to `target/interop/node/` and installed there
//! with `npm ci`; the work files go to `target/interop/work/` (kept for a look, replaced by the
//! next run). The Rust half is the `yjs_interop` example of `onefolder-examples`
//! (`examples/yjs_interop.rs`), the JavaScript half `xtask/interop/interop.js`. Both exchange
//! whole segment files (header and payload, as on the shared medium); a payload is a lib0 v1
//! update, uncompressed, applied with `Y.applyUpdate` / `Engine::apply_remote`.
//!
//! 1. **Rust → Yjs.** `yjs_interop write` builds a library through the model on the yrs engine
//!    (tags with names, colours and parents; files with tags; locations; saved searches; field
//!    overwrites, a set member removed, deletions, cleared fields; a record holding every kind
//!    of value) and writes three delta segments, merged as a flush merges a device's edits, and
//!    a snapshot segment, with the records the engine reads after each. `interop.js read`
//!    applies the deltas one by one to one `Y.Doc`, and the snapshot to a fresh one, and reads
//!    the records through the documented layout. Every state must be equal.
//! 2. **Yjs → Rust.** `interop.js write` starts from the Rust snapshot, makes new records of
//!    every kind, overwrites, set changes and deletions (of its own records and the Rust
//!    side's) in two flushes, and writes them as delta segments, then a snapshot segment
//!    (`Y.encodeStateAsUpdate`). `yjs_interop read` decodes them as the replica decodes a
//!    peer's segment, applies the deltas with `Engine::apply_remote`, and the snapshot both
//!    with `apply_remote` (a peer's snapshot segment) and with `load_snapshot` on an empty
//!    engine. Every state must equal what Yjs read; the model must read the JavaScript
//!    records as the JavaScript side meant them (names, parents, colours, paths, tags).
//! 3. **Concurrent.** After its snapshot the Rust side edits once more (a tag renamed and
//!    hidden, a tag assignment removed, a file deleted, a tag created); the JavaScript side,
//!    without that delta, renames and recolours the same tag, adds the assignment back, edits
//!    the deleted file and creates the same tag. Yjs merges the Rust delta into its document
//!    and checks the outcome (fields of both sides kept, add wins, the deletion stays, one
//!    created tag); the Rust side reopens its state and applies every JavaScript delta. Both
//!    merged states must be equal.
//!
//! A difference fails the task with the first differing record (collection, id and field,
//! with both sides' values).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value};

use crate::bench::target_dir;
use crate::project_root;

/// The files of the Node project, copied before `npm ci`.
const NODE_FILES: [&str; 3] = ["package.json", "package-lock.json", "interop.js"];

/// The task.
pub(crate) fn interop(args: &[String]) -> Result<()> {
    if let Some(other) = args.first() {
        bail!("unknown option {other:?}: `cargo xtask interop` takes none");
    }
    for tool in ["node", "npm"] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        ensure!(found, "{tool} not found on PATH: `cargo xtask interop` needs Node.js and npm");
    }
    let source = project_root().join("xtask").join("interop");
    let pinned = pinned_yjs(&source)?;
    let base = target_dir().join("interop");
    let node = base.join("node");
    let work = base.join("work");
    for dir in [&node, &work] {
        if dir == &work && work.exists() {
            std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for file in NODE_FILES {
        std::fs::copy(source.join(file), node.join(file)).with_context(|| format!("copying {file}"))?;
    }
    run_in(&node, "npm", &["ci", "--no-audit", "--no-fund", "--loglevel=error"])?;
    let script = node.join("interop.js");
    let script = script.to_str().context("a non-UTF-8 path")?;
    let work_arg = work.to_str().context("a non-UTF-8 path")?;
    let helper = |mode: &str| {
        run_in(
            &project_root(),
            "cargo",
            &["run", "-q", "-p", "onefolder-examples", "--example", "yjs_interop", "--", mode, work_arg],
        )
    };

    // 1. Rust -> Yjs.
    helper("write")?;
    run_in(&node, "node", &[script, "read", work_arg])?;
    let rust = read_json(&work.join("rust-to-js").join("rust.json"))?;
    let yjs = read_json(&work.join("js-read.json"))?;
    check_version(&yjs, &pinned)?;
    let mut to_js = Tally::default();
    for (r, j) in entries(&rust, "deltas")?.iter().zip(entries(&yjs, "deltas")?) {
        let what = format!("Rust -> Yjs, delta segment {}", file(r)?);
        to_js.add(compare(&what, ("Rust", &r["records"]), ("Yjs", &j["records"]))?);
    }
    ensure!(entries(&rust, "deltas")?.len() == entries(&yjs, "deltas")?.len(), "Yjs read a different number of deltas");
    let what = format!("Rust -> Yjs, snapshot segment {}", file(&rust["snapshot"])?);
    to_js.add(compare(&what, ("Rust", &rust["snapshot"]["records"]), ("Yjs", &yjs["snapshot"]["records"]))?);

    // 2. Yjs -> Rust, and 3. the concurrent merge.
    run_in(&node, "node", &[script, "write", work_arg])?;
    helper("read")?;
    let j2r = work.join("js-to-rust");
    let yjs = read_json(&j2r.join("js.json"))?;
    let rust = read_json(&j2r.join("rust-read.json"))?;
    check_version(&yjs, &pinned)?;
    let mut to_rust = Tally::default();
    ensure!(
        entries(&rust, "deltas")?.len() == entries(&yjs, "deltas")?.len(),
        "Rust read a different number of deltas"
    );
    for (j, r) in entries(&yjs, "deltas")?.iter().zip(entries(&rust, "deltas")?) {
        let what = format!("Yjs -> Rust, delta segment {}", file(j)?);
        to_rust.add(compare(&what, ("Yjs", &j["records"]), ("Rust", &r["records"]))?);
    }
    let snapshot = file(&yjs["snapshot"])?;
    for (how, key) in [("ingested", "ingested"), ("loaded", "loaded")] {
        let what = format!("Yjs -> Rust, snapshot segment {snapshot} {how}");
        to_rust.add(compare(&what, ("Yjs", &yjs["snapshot"]["records"]), ("Rust", &rust["snapshot"][key]))?);
    }
    let modelled = compare_model(&yjs["model"], &rust["model"])?;
    let merged = compare(
        "concurrent edits, each side merged with the other's delta",
        ("Yjs", &yjs["concurrent"]["merged"]),
        ("Rust", &rust["concurrent"]["merged"]),
    )?;

    println!("Yjs interop: npm yjs {pinned} and the yrs engine read the same records");
    println!(
        "  Rust -> Yjs: {} segments (deltas one by one, the snapshot alone), {} records equal",
        to_js.states, to_js.records
    );
    println!(
        "  Yjs -> Rust: {} states (deltas one by one, the snapshot ingested and loaded), {} records equal; \
         {modelled} records read by the model as written",
        to_rust.states, to_rust.records
    );
    println!("  concurrent: one edit on each side of the same records, merged on both, {merged} records equal");
    println!("  files in {}", work.display());
    Ok(())
}

/// States and records compared in one direction.
#[derive(Default)]
struct Tally {
    states: usize,
    records: usize,
}

impl Tally {
    fn add(&mut self, records: usize) {
        self.states += 1;
        self.records += records;
    }
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ (cd {} && {program} {})", dir.display(), args.join(" "));
    let status =
        Command::new(program).args(args).current_dir(dir).status().with_context(|| format!("running {program}"))?;
    ensure!(status.success(), "`{program} {}` failed with {status}", args.join(" "));
    Ok(())
}

fn read_json(path: &PathBuf) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The exact `yjs` version `package.json` pins.
fn pinned_yjs(source: &Path) -> Result<String> {
    let package = read_json(&source.join("package.json"))?;
    let version = package["dependencies"]["yjs"].as_str().context("package.json does not depend on yjs")?;
    ensure!(
        version.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "package.json must pin yjs to one exact version, not {version:?}"
    );
    Ok(version.to_owned())
}

fn check_version(output: &Value, pinned: &str) -> Result<()> {
    let used = output["yjs"].as_str().unwrap_or("unknown");
    ensure!(used == pinned, "the JavaScript side ran yjs {used}, package.json pins {pinned}");
    Ok(())
}

fn entries<'a>(output: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    output[key].as_array().with_context(|| format!("no {key:?} list in the output"))
}

fn file(entry: &Value) -> Result<&str> {
    entry["file"].as_str().context("a segment entry without a file name")
}

fn object(value: &Value) -> Result<&Map<String, Value>> {
    value.as_object().with_context(|| format!("expected a JSON object, found {value}"))
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing (absent)".to_owned(), Value::to_string)
}

/// Compares two normalised states (`{collection: {id: {field: value}}}`); returns the number of
/// records compared, or fails naming the first differing record.
fn compare(what: &str, (a_side, a): (&str, &Value), (b_side, b): (&str, &Value)) -> Result<usize> {
    let (a, b) = (object(a)?, object(b)?);
    let empty = Map::new();
    let mut compared = 0;
    let collections: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for collection in collections {
        let ra = a.get(collection).map(object).transpose()?.unwrap_or(&empty);
        let rb = b.get(collection).map(object).transpose()?.unwrap_or(&empty);
        let ids: BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
        for id in ids {
            let (x, y) = (ra.get(id), rb.get(id));
            if x == y {
                compared += 1;
                continue;
            }
            let detail = match (x.map(object).transpose()?, y.map(object).transpose()?) {
                (Some(fx), Some(fy)) => {
                    let fields: BTreeSet<&String> = fx.keys().chain(fy.keys()).collect();
                    let field = fields.into_iter().find(|f| fx.get(*f) != fy.get(*f)).expect("the records differ");
                    format!(
                        "field {field:?}: {a_side} reads {}, {b_side} reads {}",
                        show(fx.get(field)),
                        show(fy.get(field))
                    )
                }
                (Some(_), None) => format!("the record exists for {a_side} only"),
                (None, _) => format!("the record exists for {b_side} only"),
            };
            bail!(
                "{what}: first difference in record {collection}/{id}: {detail}\n  {a_side}: {}\n  {b_side}: {}",
                show(x),
                show(y)
            );
        }
    }
    Ok(compared)
}

/// Checks the fields the JavaScript side expects the model to read from its records (`null`:
/// the record is absent); returns the number of records checked.
fn compare_model(expected: &Value, model: &Value) -> Result<usize> {
    let mut checked = 0;
    for (collection, records) in object(expected)? {
        let actual = object(&model[collection.as_str()])?;
        for (id, fields) in object(records)? {
            checked += 1;
            let what = format!("the model's view of the Yjs records: {collection}/{id}");
            let Some(fields) = fields.as_object() else {
                ensure!(!actual.contains_key(id), "{what} exists, Yjs deleted it: {}", actual[id]);
                continue;
            };
            let record = actual.get(id).with_context(|| format!("{what} is missing"))?;
            for (field, value) in fields {
                ensure!(
                    record.get(field) == Some(value),
                    "{what}: field {field:?} is {}, the JavaScript side expects {value}\n  model: {record}",
                    show(record.get(field))
                );
            }
        }
    }
    Ok(checked)
}

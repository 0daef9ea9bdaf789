//! Step `cli-setup`: makes the replica that [`crate::measure::build`] left in a working
//! directory usable by the `onefolder-sync` command, for `cargo xtask bench`'s `cli-query` step
//! (issue 14: open + one tag query through the CLI against the prototype in Node, each a whole
//! process).
//!
//! The bench's device state (`dir/state/`, [`crate::measure::state_dir`]) is the store the CLI
//! opens too; what the CLI needs besides is its `state.json`, naming the library folder
//! ([`crate::measure::library_dir`]), the library id from its `library.json`, the engine, the
//! store and the device's name (the bench's, so that the device's `device.json` stays as it
//! is). [`setup`] writes it (the device id is left for the first command to record) and
//! reports the tag to query: [`crate::prototype::query_target`], by id, with what the query
//! must find. The query itself (`files --tag ID --recursive --json`) only reads.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::backends::Backend;
use crate::measure::{library_dir, state_dir};
use crate::workload::Workload;

/// The device name the bench's replicas use (`measure::config("bench-device", …)`).
pub const DEVICE_NAME: &str = "bench-device";

/// What [`setup`] wrote and what the query must find.
#[derive(Clone, Debug, Serialize)]
pub struct CliSetupReport {
    /// The state directory to pass as `--state`.
    pub state_dir: String,
    /// The library folder `state.json` names.
    pub library_dir: String,
    /// Id of the tag to query (`--tag`).
    pub tag_id: String,
    /// Its name.
    pub tag: String,
    /// Tags in its subtree, itself included.
    pub subtree: usize,
    /// Files the recursive query must find.
    pub files: usize,
}

/// Writes `state.json` into the device state of `dir` for `b` (the engine must be the
/// library's) and returns the query's tag.
pub fn setup(b: &Backend, w: &Workload, dir: &Path) -> Result<CliSetupReport> {
    let library = std::path::absolute(library_dir(dir))?;
    let state = std::path::absolute(state_dir(dir))?;
    let manifest_path = library.join("onefolder_tags").join(onefolder_core::names::MANIFEST_FILE);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("reading {} (run `build` first)", manifest_path.display()))?,
    )
    .with_context(|| format!("parsing {}", manifest_path.display()))?;
    ensure!(
        manifest["engine"].as_str() == Some(b.engine_name),
        "the library in {} uses the engine {}, not {}",
        library.display(),
        manifest["engine"],
        b.engine_name
    );
    ensure!(state.is_dir(), "{} holds no device state (run `build` first)", state.display());
    let config = json!({
        "format": 1,
        "library": library,
        "libraryId": manifest["library_id"],
        "engine": b.engine_name,
        "store": b.store_name,
        "deviceName": DEVICE_NAME,
        "deviceId": null,
    });
    std::fs::write(state.join("state.json"), serde_json::to_string_pretty(&config)? + "\n")?;
    let target = crate::prototype::query_target(w);
    Ok(CliSetupReport {
        state_dir: state.display().to_string(),
        library_dir: library.display().to_string(),
        tag_id: w.tag_id(target.tag).to_owned(),
        tag: w.tag(target.tag).name.clone(),
        subtree: target.subtree,
        files: target.files,
    })
}

//! # onefolder-bench
//!
//! The benchmarks behind `cargo xtask bench`: engines × stores on the OneFolder workload, each
//! figure next to a baseline measured in the same run (this machine is shared and noisy, so
//! only ratios compare across runs).
//!
//! - [`workload`]: the deterministic workload W (100 000 files, 2 000 tags five levels deep,
//!   300 000 assignments) and its W/20 `quick` preset, written through the model or as raw ops;
//! - [`backends`]: the one list of engines and stores to measure;
//! - [`measure`]: each measurement as a function of an engine (and store) factory;
//! - [`metered`]: a transport layer counting bytes written and files read;
//! - [`prototype`]: the baseline users compare with, W in the JavaScript prototype's layout
//!   (one document, one whole record per id) written on the engine crates directly;
//! - [`dump`]: the workload as JSON in OneFolder's DTO shapes, for the Node binding's benchmark;
//! - [`cli_query`]: the built replica made usable by the `onefolder-sync` command (the CLI
//!   against the prototype in Node, each a whole process);
//! - the `onefolder-bench` binary runs one measurement per process (so that peak RSS belongs to
//!   one step) and prints one JSON line; `cargo xtask bench` runs them all and writes
//!   `BENCHMARKS.md`.
//!
//! Nothing here asserts on a time: tests check that the measurements run and count correctly.

#![warn(missing_docs)]

pub mod backends;
pub mod cli_query;
pub mod dump;
pub mod measure;
pub mod metered;
pub mod prototype;
pub mod workload;

pub use backends::Backend;
pub use workload::{Edit, ModelEdit, Preset, Workload};

/// Peak resident set size of this process in KiB (`VmHWM` in `/proc/self/status`); `None` where
/// the kernel does not report it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

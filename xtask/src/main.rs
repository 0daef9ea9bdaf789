//! `cargo xtask`: the project's automation, in Rust (see rust-analyzer's xtask).
//!
//! - `cargo xtask test`: the whole test suite on a fresh machine — installs the test servers
//!   (`test-servers`), then `cargo test --workspace`.
//! - `cargo xtask ci`: rustfmt check, clippy with warnings denied, then `test`.
//! - `cargo xtask bench [--quick | --full] [--out FILE] [--no-node | --node-only]`: engines ×
//!   stores on the OneFolder workload, and the Node binding's `DataStorage` against the
//!   prototype's Yjs document, written to `BENCHMARKS.md` (see [`bench`]).
//! - `cargo xtask fuzz [--seconds N] [TARGET…]`: the cargo-fuzz targets in `fuzz/` (see [`fuzz`]).
//! - `cargo xtask test-servers [--force]`: installs moto and wsgidav, the S3 and WebDAV servers
//!   the tests start, into `target/test-servers/venv` (see [`servers`]).
//! - `cargo xtask syncthing [--keep]`: two computers through two real Syncthing instances on
//!   127.0.0.1, end to end through the CLI; a report in `target/syncthing-report.md` (see
//!   [`syncthing`]).
//! - `cargo xtask interop`: JavaScript Yjs (npm `yjs` 13.6.33) and the yrs engine read the same
//!   records from each other's delta and snapshot segments, and merge concurrent edits alike
//!   (see [`interop`]; needs Node.js and npm).

mod bench;
mod fuzz;
mod interop;
mod servers;
mod syncthing;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(project_root())
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// The test servers, then every test of the workspace.
fn test() -> Result<()> {
    servers::test_servers(&[])?;
    run("cargo", &["test", "--workspace"])
}

fn ci() -> Result<()> {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    test()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("test-servers") => servers::test_servers(&args[1..]),
        Some("syncthing") => syncthing::syncthing(&args[1..]),
        Some("interop") => interop::interop(&args[1..]),
        Some(other) => bail!("unknown task {other:?}; tasks: test, ci, bench, fuzz, test-servers, syncthing, interop"),
        None => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  test   install the test servers, then cargo test --workspace\n  \
                 ci     rustfmt check, clippy -D warnings, then test\n  \
                 bench  [--quick | --full] [--out FILE] [--no-node | --node-only]: engines x stores on the OneFolder workload,\n         \
                 and the Node binding's DataStorage against the prototype's Yjs document -> BENCHMARKS.md\n  \
                 fuzz   [--seconds N] [TARGET...]: the cargo-fuzz targets in fuzz/\n  \
                 test-servers [--force]: install moto (S3) and wsgidav (WebDAV) for the tests into target/test-servers/venv\n  \
                 syncthing [--keep]: two computers end to end through two Syncthing instances on 127.0.0.1 -> target/syncthing-report.md\n  \
                 interop  npm yjs 13.6.33 and the yrs engine read each other's segments and snapshots (needs node and npm) -> target/interop"
            );
            Ok(())
        }
    }
}

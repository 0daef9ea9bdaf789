//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs the cargo-fuzz targets in `fuzz/`.
//!
//! cargo-fuzz needs nightly compiler flags; this machine has only stable Rust, so the run sets
//! `RUSTC_BOOTSTRAP=1` (the fuzz crate is outside the workspace, so nothing else sees it).
//! cargo-fuzz itself is installed on first use (`cargo install cargo-fuzz --locked`). A crash
//! leaves its input in `fuzz/artifacts/<target>/`; turn it into a regression test.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::project_root;

/// Every target in `fuzz/Cargo.toml`.
const TARGETS: &[&str] = &["segment_decode", "segment_names", "engine_yrs_apply", "engine_automerge_apply"];

/// Runs the fuzz task.
pub fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut targets: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it.next().context("--seconds needs a number")?.parse().context("--seconds needs a number")?
            }
            other => match TARGETS.iter().find(|t| **t == other) {
                Some(target) => targets.push(target),
                None => bail!("unknown fuzz argument {other:?}; targets: {}", TARGETS.join(", ")),
            },
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let installed = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        crate::run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    let fuzz_dir = project_root().join("fuzz");
    for target in targets {
        eprintln!("== fuzzing {target} for {seconds} s");
        let status = Command::new("cargo")
            .args(["fuzz", "run", target, "--", &format!("-max_total_time={seconds}"), "-rss_limit_mb=1024"])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!("{target} found a crash; its input is in fuzz/artifacts/{target}/");
        }
    }
    Ok(())
}

//! `cargo xtask test-servers`: installs the real servers the S3 and WebDAV tests start (moto
//! for S3, wsgidav for WebDAV) into a Python virtual environment inside the workspace,
//! `target/test-servers/venv`, and prints where. Quick when already installed: the venv
//! keeps a stamp of the pinned requirements and is reused while they match.
//!
//! The tests (`onefolder-transport-opendal`, the conformance suite's `s3` / `webdav`
//! features) find the venv there, or where `ONEFOLDER_SYNC_TEST_SERVERS` points.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::project_root;

/// The pinned requirements; change them here and the venv is rebuilt on the next run.
const REQUIREMENTS: &[&str] =
    &["moto[server]==5.1.22", "wsgidav==4.3.3", "cheroot==11.1.2", "werkzeug==3.1.9", "flask==3.1.3"];
const STAMP: &str = "onefolder-requirements.txt";

pub(crate) fn test_servers(args: &[String]) -> Result<()> {
    let force = match args {
        [] => false,
        [flag] if flag == "--force" => true,
        _ => bail!("usage: cargo xtask test-servers [--force]"),
    };
    let venv = project_root().join("target").join("test-servers").join("venv");
    let python = venv.join("bin").join("python");
    let wanted = REQUIREMENTS.join("\n") + "\n";
    let stamp = venv.join(STAMP);
    let current = std::fs::read_to_string(&stamp).unwrap_or_default();
    if !force && current == wanted && imports_work(&python) {
        println!("test servers already installed in {}", venv.display());
        return Ok(());
    }
    let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing the old {}", venv.display()))?;
    }
    std::fs::create_dir_all(venv.parent().expect("a parent")).context("creating target/test-servers")?;
    run(Command::new(&base).args(["-m", "venv"]).arg(&venv), &format!("{base} -m venv"))?;
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]).args(REQUIREMENTS);
    run(&mut pip, "pip install")?;
    if !imports_work(&python) {
        bail!("the servers were installed in {} but do not import", venv.display());
    }
    std::fs::write(&stamp, wanted).context("writing the requirements stamp")?;
    println!("test servers installed in {}", venv.display());
    Ok(())
}

fn imports_work(python: &Path) -> bool {
    python.exists()
        && Command::new(python)
            .args(["-c", "import moto.server, werkzeug.serving, wsgidav.wsgidav_app, cheroot.wsgi"])
            .status()
            .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("$ {what}");
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("`{what}` failed with {status}");
    }
    Ok(())
}

//! Two simulated computers: each has its own copy of the library folder and its own `--state`;
//! [`exchange`] copies the shared `onefolder_tags` files between the copies the way a sync client
//! does (new files appear atomically, `device.json` is replaced when it changed).

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_onefolder-sync");

/// A test's private world: a temporary root with a fake OS data directory.
pub struct World {
    pub root: TempDir,
}

impl World {
    pub fn new() -> World {
        World { root: tempfile::tempdir().expect("temporary directory") }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The data directory the program sees (its `XDG_DATA_HOME`).
    pub fn xdg(&self) -> PathBuf {
        self.path().join("xdg-data")
    }

    /// A computer with its own library folder copy (`<name>/Pictures`) and state (`<name>/state`).
    pub fn computer(&self, name: &str) -> Computer {
        let library = self.path().join(name).join("Pictures");
        std::fs::create_dir_all(&library).expect("library folder");
        Computer {
            library,
            state: Some(self.path().join(name).join("state")),
            xdg: self.xdg(),
            home: self.path().into(),
            env: Vec::new(),
        }
    }

    /// A command with the world's environment and no `--state`.
    pub fn cmd(&self) -> Command {
        base_cmd(&self.xdg(), self.path())
    }
}

fn base_cmd(xdg: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("ONEFOLDER_SYNC_STATE")
        .env_remove("ONEFOLDER_SYNC_LIBRARY")
        .env_remove("RUST_LOG")
        .env("XDG_DATA_HOME", xdg)
        .env("HOME", home)
        .timeout(std::time::Duration::from_secs(120));
    cmd
}

/// One simulated computer.
pub struct Computer {
    pub library: PathBuf,
    pub state: Option<PathBuf>,
    xdg: PathBuf,
    home: PathBuf,
    /// Extra environment of every command (a provider's endpoints and app id).
    pub env: Vec<(String, String)>,
}

impl Computer {
    /// A command for this computer (with `--state` when it has one).
    pub fn cmd(&self) -> Command {
        let mut cmd = base_cmd(&self.xdg, &self.home);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(state) = &self.state {
            cmd.arg("--state").arg(state);
        }
        cmd
    }

    /// A plain `std::process::Command` for this computer, for long-running children.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_remove("ONEFOLDER_SYNC_STATE")
            .env_remove("ONEFOLDER_SYNC_LIBRARY")
            .env_remove("RUST_LOG")
            .env("XDG_DATA_HOME", &self.xdg)
            .env("HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(state) = &self.state {
            cmd.arg("--state").arg(state);
        }
        cmd
    }

    /// The library folder as a string argument.
    pub fn lib(&self) -> String {
        self.library.display().to_string()
    }

    /// Runs a command, whatever its outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run onefolder-sync")
    }

    /// Runs a command that must succeed; returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`onefolder-sync {}` failed with {:?}\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a command with `--json` that must succeed; returns the parsed output.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {text}", args.join(" ")))
    }

    /// Runs a command that must fail with `code` and a one-line `error: …` message; returns it.
    #[track_caller]
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "`onefolder-sync {}`: wrong exit code\nstdout: {}\nstderr: {stderr}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        assert_one_line_error(&stderr);
        stderr
    }

    /// The canonical export.
    #[track_caller]
    pub fn export(&self) -> String {
        self.ok(&["export", "--json"])
    }

    /// Writes a picture into the library folder.
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        write_file(&self.library.join(rel), bytes);
    }

    /// The ids of the files in the index, by shown path.
    #[track_caller]
    pub fn file_ids(&self) -> std::collections::BTreeMap<String, String> {
        let files = self.json(&["files"]);
        files
            .as_array()
            .expect("a list")
            .iter()
            .map(|f| (f["shown"].as_str().unwrap().to_owned(), f["id"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// The tag paths of one file (by shown path).
    #[track_caller]
    pub fn tags_of(&self, shown: &str) -> Vec<String> {
        let files = self.json(&["files"]);
        let f = files
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["shown"] == shown)
            .unwrap_or_else(|| panic!("{shown} is not in the index: {files:#}"));
        f["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
    }
}

/// Asserts a failure message is exactly one line, `error: …`, without a backtrace.
#[track_caller]
pub fn assert_one_line_error(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "expected `error: …`, got: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Copies `from` into `to` the way a sync client publishes a file: a temporary name in the
/// same folder, then a rename.
fn publish(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let tmp = to.with_file_name(format!(".{}.synctmp", to.file_name().unwrap().to_string_lossy()));
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Copies every file of `from/<sub>` that `to/<sub>` lacks (or that differs, for
/// `device.json`). Returns how many files were copied.
pub fn copy_new(from: &Path, to: &Path, sub: &str) -> usize {
    let (src, dst) = (from.join(sub), to.join(sub));
    let mut copied = 0;
    for rel in files_under(&src) {
        let (a, b) = (src.join(&rel), dst.join(&rel));
        let replace =
            rel.file_name().is_some_and(|n| n == "device.json") && std::fs::read(&a).ok() != std::fs::read(&b).ok();
        if !b.exists() || replace {
            publish(&a, &b);
            copied += 1;
        }
    }
    copied
}

/// One round of a sync client: the shared database files travel both ways.
pub fn exchange(a: &Computer, b: &Computer) -> usize {
    copy_new(&a.library, &b.library, "onefolder_tags") + copy_new(&b.library, &a.library, "onefolder_tags")
}

/// Both computers sync, with the sync client carrying files between them, until both exports
/// are equal (at most a few rounds).
#[track_caller]
pub fn converge(a: &Computer, b: &Computer) -> String {
    for _ in 0..4 {
        a.ok(&["sync", "--once"]);
        exchange(a, b);
        b.ok(&["sync", "--once"]);
        exchange(a, b);
        a.ok(&["sync", "--once"]);
        let (ea, eb) = (a.export(), b.export());
        if ea == eb {
            return ea;
        }
    }
    let (ea, eb) = (a.export(), b.export());
    assert_eq!(ea, eb, "the two computers did not converge");
    ea
}

/// A library on `a`, pictures indexed, joined by `b` from a full copy of the folder.
pub fn pair(w: &World) -> (Computer, Computer) {
    let a = w.computer("laptop");
    let b = w.computer("desktop");
    a.write("2026/tom.jpg", b"tom the cat");
    a.write("2026/rex.png", b"rex the dog");
    a.ok(&["init", &a.lib(), "--name", "laptop"]);
    a.ok(&["index"]);
    a.ok(&["sync", "--once"]);
    // The sync client brings the whole folder, pictures included.
    copy_new(&a.library, &b.library, "");
    b.ok(&["join", &b.lib(), "--name", "desktop"]);
    b.ok(&["index"]);
    (a, b)
}

//! `sync --watch` as a long-running child: it applies the other computer's changes as the sync
//! client brings them, prints each one, and on Ctrl-C writes what is pending and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{Computer, World, converge, exchange, pair};

/// Generous: the watcher normally reacts within 100 ms; a loaded CI machine may be slow.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `sync --watch` with its stdout read line by line on a thread.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Watch {
    pub fn start(c: &Computer, extra: &[&str]) -> Watch {
        let mut child = c
            .std_cmd()
            .args(["sync", "--watch"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sync --watch");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines, seen: Vec::new() }
    }

    /// Waits (up to the deadline) for a stdout line containing `needle`.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {DEADLINE:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Waits (up to the deadline) until `n` stdout lines contain `needle`.
    #[track_caller]
    pub fn wait_for_count(&mut self, needle: &str, n: usize) {
        let end = Instant::now() + DEADLINE;
        while self.seen.iter().filter(|l| l.contains(needle)).count() < n {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("fewer than {n} lines with {needle:?} within {DEADLINE:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit; returns the exit code and the rest of stdout.
    pub fn interrupt(mut self) -> (Option<i32>, Vec<String>) {
        #[cfg(unix)]
        {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            assert_eq!(rc, 0, "kill(SIGINT)");
        }
        #[cfg(not(unix))]
        self.child.kill().unwrap();
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < end, "sync --watch did not exit after Ctrl-C");
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        self.seen.extend(rest);
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(!err.contains("panicked"), "{err}");
        (status.code(), std::mem::take(&mut self.seen))
    }

    /// Kills it (SIGKILL: a crash, nothing runs on the way out) and waits for it to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("kill sync --watch");
        self.child.wait().expect("reap sync --watch");
    }

    /// Stops it and checks it exited cleanly.
    pub fn stop(self) {
        let (code, seen) = self.interrupt();
        assert_eq!(code, Some(0), "{seen:?}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A failed assertion must not leave the child running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn watch_applies_changes_as_they_arrive_and_flushes_on_ctrl_c() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    converge(&laptop, &desktop);
    // An edit waiting on the laptop; the long debounce keeps it pending until Ctrl-C.
    laptop.ok(&["tag", "create", "Written on exit"]);
    let own = laptop.json(&["status"])["device"].as_str().unwrap().to_owned();
    let own_folder = laptop.library.join("onefolder_tags/database").join(&own);
    let segments = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
            .count()
    };
    let before = segments(&own_folder);

    let mut watch = Watch::start(&laptop, &["--debounce", "600"]);
    watch.wait_for("watching");
    // The desktop edits and syncs; the sync client brings its files over.
    desktop.ok(&["tag", "create", "From the desktop"]);
    desktop.ok(&["tag", "add", "2026/rex.png", "From the desktop"]);
    desktop.ok(&["sync", "--once"]);
    exchange(&laptop, &desktop);
    let line = watch.wait_for("applied");
    assert!(line.contains("from desktop"), "{line}");

    let (code, lines) = watch.interrupt();
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("wrote 1 edit to the shared folder")), "flushed on Ctrl-C: {lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("stopped"));
    assert_eq!(segments(&own_folder), before + 1);
    assert_eq!(laptop.json(&["status"])["pendingEdits"], 0);
    assert_eq!(laptop.tags_of("2026/rex.png"), ["From the desktop"]);
    let export = converge(&laptop, &desktop);
    assert!(export.contains("Written on exit") && export.contains("From the desktop"));
}

#[test]
fn watch_prints_json_events() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    converge(&laptop, &desktop);
    let mut watch = Watch::start(&laptop, &["--json"]);
    watch.wait_for("\"watching\"");
    desktop.ok(&["tag", "create", "Json"]);
    desktop.ok(&["sync", "--once"]);
    exchange(&laptop, &desktop);
    let line = watch.wait_for("\"applied\"");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "applied");
    assert!(event["seq"].as_u64().unwrap() >= 1);
    watch.stop();
}

#[test]
fn watch_takes_rotating_automatic_backups_when_the_library_changes() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    converge(&laptop, &desktop);
    let args = ["--backup-every", "0.2", "--keep-recent", "2", "--keep-daily", "0", "--keep-weekly", "0"];
    let mut watch = Watch::start(&laptop, &args);
    watch.wait_for("watching");
    let first = watch.wait_for("automatic backup");
    // Each change the desktop sends makes one more backup; two are kept.
    for (k, name) in ["First change", "Second change"].into_iter().enumerate() {
        desktop.ok(&["tag", "create", name]);
        desktop.ok(&["sync", "--once"]);
        exchange(&laptop, &desktop);
        watch.wait_for_count("applied", k + 1);
        watch.wait_for_count("automatic backup", k + 2);
    }
    watch.stop();
    let state = laptop.state.as_ref().unwrap().join("backups");
    let autos: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(autos.len(), 2, "the rotation keeps two: {autos:?}");
    let first_file = first.trim_start_matches("automatic backup ").to_owned();
    assert!(!std::path::Path::new(&first_file).exists(), "the oldest was rotated away");
    // They are listed with the shared backups, and each holds the library as it was.
    let listed = laptop.json(&["backup", "--list"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let newest = listed.iter().max_by_key(|l| l["header"]["createdMs"].as_i64().unwrap()).unwrap();
    let peek = laptop.json(&["peek", newest["file"].as_str().unwrap()]);
    assert_eq!(peek["tags"].as_u64().unwrap() as usize, laptop.json(&["tags"]).as_array().unwrap().len());
}

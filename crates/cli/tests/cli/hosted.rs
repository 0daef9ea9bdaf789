//! Commands while `sync --watch` runs (they run inside it, over its local socket), commands
//! that wait for each other, and holders that crashed.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Computer, World, converge, exchange, pair};
use crate::watch::Watch;

/// Generous: a loaded CI machine may be slow.
const DEADLINE: Duration = Duration::from_secs(90);

/// Polls `cond` until it holds or the deadline passes.
#[track_caller]
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command that must not wait for the store: with no waiting allowed, it fails at once
/// when anything but a host would make it wait.
fn no_wait(c: &Computer, args: &[&str]) -> String {
    let out = c.cmd().env("ONEFOLDER_SYNC_WAIT", "0").args(args).output().expect("run onefolder-sync");
    assert!(
        out.status.success(),
        "`{}` failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_command_runs_inside_a_running_watch_and_the_watch_shares_the_edits() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    converge(&laptop, &desktop);
    let mut watch = Watch::start(&laptop, &["--debounce", "0.2"]);
    watch.wait_for("watching");

    // Edits and reads: nothing waits for the store (ONEFOLDER_SYNC_WAIT=0), each one is
    // committed by the watching process before the command returns, and reads see it.
    no_wait(&laptop, &["tag", "create", "While watching", "--color", "blue"]);
    no_wait(&laptop, &["tag", "add", "2026/tom.jpg", "While watching"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["While watching"]);
    let files: serde_json::Value =
        serde_json::from_str(&no_wait(&laptop, &["--json", "files", "--tag", "While watching"])).unwrap();
    assert_eq!(files.as_array().map(Vec::len), Some(1), "{files:#}");
    assert!(no_wait(&laptop, &["--json", "status"]).contains("\"device\""));
    no_wait(&laptop, &["verify"]);
    no_wait(&laptop, &["devices"]);

    // `index` finds a new picture; relative paths are the caller's, not the watch's.
    laptop.write("2026/new.jpg", b"a new picture");
    no_wait(&laptop, &["index"]);
    assert!(laptop.file_ids().contains_key("2026/new.jpg"), "{:?}", laptop.file_ids());
    let elsewhere = w.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = laptop.cmd().current_dir(&elsewhere).args(["export", "-o", "saved.json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved = std::fs::read_to_string(elsewhere.join("saved.json")).unwrap();
    assert_eq!(saved.trim_end(), laptop.export().trim_end());

    // `import -` gets the caller's standard input.
    no_wait(&laptop, &["tag", "create", "Undone by the import"]);
    let import =
        laptop.cmd().env("ONEFOLDER_SYNC_WAIT", "0").args(["import", "-"]).write_stdin(saved.clone()).output().unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    assert!(String::from_utf8_lossy(&import.stdout).contains("the library now equals the file"));
    assert!(!laptop.export().contains("Undone by the import"));

    // Errors come back as errors, with their exit codes; a second watch is refused.
    let msg = laptop.fails(&["tag", "add", "2026/tom.jpg", "No such tag"], 1);
    assert!(msg.contains("No such tag"), "{msg}");
    let msg = laptop.fails(&["sync", "--watch"], 1);
    assert!(msg.contains("already running"), "{msg}");
    no_wait(&laptop, &["sync", "--once"]);

    // The watch wrote the edits to the shared folder by itself; the desktop gets them.
    watch.wait_for("wrote");
    eventually("the laptop's edits are flushed", || laptop.json(&["status"])["pendingEdits"] == 0);
    exchange(&laptop, &desktop);
    desktop.ok(&["sync", "--once"]);
    assert_eq!(desktop.tags_of("2026/tom.jpg"), ["While watching"]);
    assert_eq!(desktop.export(), laptop.export());
    watch.stop();
    // Stopped: commands open the state themselves again, and the socket is gone.
    assert!(!laptop.state.as_ref().unwrap().join("sync.sock").exists());
    no_wait(&laptop, &["status"]);
}

#[test]
fn concurrent_commands_wait_for_each_other_instead_of_failing() {
    let w = World::new();
    let (laptop, _desktop) = pair(&w);
    let laptop = std::sync::Arc::new(laptop);
    let runs: Vec<_> = (0..4)
        .map(|k| {
            let laptop = laptop.clone();
            std::thread::spawn(move || {
                if k % 2 == 0 {
                    laptop.json(&["status"]);
                } else {
                    laptop.ok(&["tag", "create", &format!("Concurrent {k}")]);
                }
            })
        })
        .collect();
    for run in runs {
        run.join().expect("every concurrent command succeeds");
    }
    let tags = laptop.ok(&["tags"]);
    assert!(tags.contains("Concurrent 1") && tags.contains("Concurrent 3"), "{tags}");
}

#[test]
#[cfg(feature = "sqlite")]
fn a_held_state_is_waited_for_and_then_reported() {
    use onefolder_store_sqlite::{SqliteOptions, SqliteStore};
    let w = World::new();
    let (laptop, _desktop) = pair(&w);
    let state = laptop.state.clone().unwrap();
    // This test process holds the store, as another command would.
    let held = SqliteStore::open(&state, SqliteOptions::default()).expect("hold the store");
    let out = laptop.cmd().env("ONEFOLDER_SYNC_WAIT", "0").args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("still in use by another onefolder-sync process") && msg.contains("ONEFOLDER_SYNC_WAIT"),
        "{msg}"
    );

    // A command with time to wait says so, and runs once the holder lets go.
    let mut waiting = laptop
        .std_cmd()
        .env("ONEFOLDER_SYNC_WAIT", "300")
        .args(["tag", "create", "After the wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(waiting.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for another onefolder-sync command"), "{line}");
    drop(held);
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "the waiting command did not finish after the store was let go");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(laptop.ok(&["tags"]).contains("After the wait"));
}

#[test]
fn a_watch_that_crashed_blocks_nobody() {
    let w = World::new();
    let (laptop, _desktop) = pair(&w);
    let mut watch = Watch::start(&laptop, &[]);
    watch.wait_for("watching");
    no_wait(&laptop, &["tag", "create", "Before the crash"]);
    watch.kill();
    // Its socket is left behind, and nothing listens on it: the next command neither waits nor
    // fails, and a new watch takes the socket over.
    assert!(laptop.state.as_ref().unwrap().join("sync.sock").exists());
    no_wait(&laptop, &["tag", "create", "After the crash"]);
    let tags = no_wait(&laptop, &["tags"]);
    assert!(tags.contains("Before the crash") && tags.contains("After the crash"), "{tags}");
    let mut watch = Watch::start(&laptop, &[]);
    watch.wait_for("watching");
    no_wait(&laptop, &["tag", "create", "Through the new watch"]);
    watch.stop();
    assert!(no_wait(&laptop, &["tags"]).contains("Through the new watch"));
}

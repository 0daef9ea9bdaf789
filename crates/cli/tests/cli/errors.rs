//! Every user error: one line, `error: …`, exit code 1, and nothing changed.

use crate::common::{World, assert_one_line_error, pair};

#[test]
fn unknown_tag_is_a_user_error() {
    let w = World::new();
    let (laptop, _) = pair(&w);
    let msg = laptop.fails(&["tag", "add", "2026/tom.jpg", "Animals/Kats"], 1);
    assert!(msg.contains("unknown tag \"Animals/Kats\""), "{msg}");
    laptop.ok(&["tag", "create", "Animals/Cats"]);
    laptop.ok(&["tag", "create", "Cats"]);
    let before = laptop.export();
    // One unknown tag among known ones: nothing is assigned.
    laptop.fails(&["tag", "add", "2026/tom.jpg", "Animals/Cats", "Nope"], 1);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), Vec::<String>::new());
    for args in [
        &["tag", "rename", "Nope", "X"][..],
        &["tag", "move", "Animals/Cats", "Nope"],
        &["tag", "delete", "Nope"],
        &["tag", "merge", "Nope", "Animals"],
        &["tag", "color", "Nope", "red"],
        &["files", "--tag", "Nope"],
    ] {
        laptop.fails(args, 1);
    }
    // Rules of the tree are user errors too.
    let msg = laptop.fails(&["tag", "move", "Animals", "Animals/Cats"], 1);
    assert!(msg.contains("under itself"), "{msg}");
    let msg = laptop.fails(&["tag", "move", "Cats", "Animals"], 1);
    assert!(msg.contains("tag merge"), "{msg}");
    let msg = laptop.fails(&["tag", "rename", "Cats", "animals"], 1);
    assert!(msg.contains("tag merge"), "{msg}");
    laptop.fails(&["tag", "color", "Cats", "\u{7}"], 1);
    assert_eq!(laptop.export(), before, "a failed command changes nothing");
}

#[test]
fn file_outside_the_library_is_a_user_error() {
    let w = World::new();
    let (laptop, _) = pair(&w);
    laptop.ok(&["tag", "create", "T"]);
    let outside = w.path().join("elsewhere.jpg");
    std::fs::write(&outside, b"x").unwrap();
    for file in ["../elsewhere.jpg", "2026/../../elsewhere.jpg", &outside.display().to_string()] {
        let msg = laptop.fails(&["tag", "add", file, "T"], 1);
        assert!(msg.contains("outside the library"), "{file}: {msg}");
    }
    let msg = laptop.fails(&["tag", "add", "2026/not-indexed.jpg", "T"], 1);
    assert!(msg.contains("onefolder-sync index"), "{msg}");
    // An absolute path inside the library works.
    let inside = laptop.library.join("2026/tom.jpg").display().to_string();
    laptop.ok(&["tag", "add", &inside, "T"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["T"]);
}

#[test]
fn library_already_initialised_is_a_user_error() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    let mut third = w.computer("third");
    third.library = laptop.library.clone();
    let msg = third.fails(&["init", &laptop.lib()], 1);
    assert!(msg.contains("already a OneFolder library") && msg.contains("join"), "{msg}");
    // A state that already serves a library cannot take a second one.
    let fresh = w.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let msg = desktop.fails(&["init", &fresh.display().to_string()], 1);
    assert!(msg.contains("already holds the local state"), "{msg}");
    assert!(!fresh.join("onefolder_tags").exists());
    // Joining twice with the same state, too.
    desktop.fails(&["join", &desktop.lib()], 1);
}

#[test]
fn wrong_engine_on_join_is_a_user_error() {
    let w = World::new();
    let laptop = w.computer("laptop");
    laptop.ok(&["init", &laptop.lib()]);
    let desktop = w.computer("desktop");
    crate::common::copy_new(&laptop.library, &desktop.library, "");
    let msg = desktop.fails(&["join", &desktop.lib(), "--engine", "automerge"], 1);
    assert!(msg.contains("wrong engine") && msg.contains("yrs"), "{msg}");
    // A library made by an engine this build lacks.
    let manifest = desktop.library.join("onefolder_tags/library.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("\"yrs\"", "\"futurecrdt\"");
    std::fs::write(&manifest, text).unwrap();
    let msg = desktop.fails(&["join", &desktop.lib()], 1);
    assert!(msg.contains("futurecrdt") && msg.contains("unknown engine"), "{msg}");
    assert!(!desktop.state.as_ref().unwrap().join("state.json").exists());
    // A state never runs on a library of another engine, and is not repointed to it.
    let msg = laptop.fails(&["--library", &desktop.lib(), "tags"], 1);
    assert!(msg.contains("wrong engine"), "{msg}");
    laptop.ok(&["tags"]);
}

#[test]
#[cfg(not(feature = "automerge"))]
fn engines_not_compiled_in_are_user_errors() {
    let w = World::new();
    let laptop = w.computer("laptop");
    let msg = laptop.fails(&["init", &laptop.lib(), "--engine", "automerge"], 1);
    assert!(msg.contains("not compiled into this build"), "{msg}");
    assert!(!laptop.library.join("onefolder_tags").exists(), "nothing created");
    let msg = laptop.fails(&["init", &laptop.lib(), "--engine", "nosuch"], 1);
    assert!(msg.contains("nosuch"), "{msg}");
}

#[test]
#[cfg(not(feature = "lmdb"))]
fn stores_not_compiled_in_are_user_errors() {
    let w = World::new();
    let laptop = w.computer("laptop");
    let msg = laptop.fails(&["init", &laptop.lib(), "--store", "lmdb"], 1);
    assert!(msg.contains("lmdb") && msg.contains("not compiled into this build"), "{msg}");
    assert!(!laptop.library.join("onefolder_tags").exists(), "nothing created");
}

#[test]
fn other_user_errors() {
    let w = World::new();
    let laptop = w.computer("laptop");
    // No library selected at all.
    let out = w.cmd().arg("tags").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_one_line_error(&stderr);
    assert!(stderr.contains("no library selected"), "{stderr}");
    // A --state that is not one.
    let msg = laptop.fails(&["tags"], 1);
    assert!(msg.contains("holds no onefolder-sync state"), "{msg}");
    // Joining a folder that holds no library; initialising one that does not exist.
    let msg = laptop.fails(&["join", &laptop.lib()], 1);
    assert!(msg.contains("not a OneFolder library"), "{msg}");
    laptop.fails(&["init", &w.path().join("no/such/folder").display().to_string()], 1);
    // The state never goes inside the synced folder.
    let mut inside = w.computer("inside");
    inside.state = Some(inside.library.join("state"));
    let msg = inside.fails(&["init", &inside.lib()], 1);
    assert!(msg.contains("must not be inside"), "{msg}");
    // Usage mistakes exit 1 too (clap's own message, with the usage).
    let out = w.cmd().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = w.cmd().args(["sync"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "sync needs --once or --watch");
    // A library folder that moved: its state says where to look.
    let w2 = World::new();
    let (a, _) = pair(&w2);
    let moved = a.library.with_file_name("Moved Pictures");
    std::fs::rename(&a.library, &moved).unwrap();
    let msg = a.fails(&["tags"], 1);
    assert!(msg.contains("--library"), "{msg}");
    a.ok(&["--library", &moved.display().to_string(), "tags"]);
    a.ok(&["tags"]);
}

#[test]
fn every_command_has_help() {
    let w = World::new();
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["join"],
        &["location"],
        &["location", "add"],
        &["location", "list"],
        &["location", "remove"],
        &["index"],
        &["tag"],
        &["tag", "create"],
        &["tag", "rename"],
        &["tag", "move"],
        &["tag", "delete"],
        &["tag", "merge"],
        &["tag", "color"],
        &["tag", "add"],
        &["tag", "remove"],
        &["tags"],
        &["files"],
        &["search"],
        &["search", "save"],
        &["search", "list"],
        &["search", "run"],
        &["search", "delete"],
        &["sync"],
        &["status"],
        &["devices"],
        &["devices", "forget"],
        &["export"],
        &["import"],
        &["inspect"],
        &["inspect", "segment"],
        &["verify"],
        &["demo"],
    ];
    for args in commands {
        let out = w.cmd().args(*args).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?} --help");
        assert!(text.contains("Usage: onefolder-sync"), "{args:?}: {text}");
    }
    let out = w.cmd().arg("--version").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("onefolder-sync "));
}

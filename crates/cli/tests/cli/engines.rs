//! The engine is chosen per library (`init --engine`), the store per computer (`--store`):
//! an automerge library kept in LMDB on one computer and in SQLite on another converges; a
//! computer cannot join with another engine; and a library moves to the other engine by
//! `export` from the old one and `import` into a new one, keeping every id and field.

use serde_json::Value;

use crate::common::{Computer, World, converge, copy_new};

fn library_json(c: &Computer) -> Value {
    let text = std::fs::read_to_string(c.library.join("onefolder_tags/library.json")).expect("library.json");
    serde_json::from_str(&text).expect("library.json is JSON")
}

/// A library made with `engine` on `a` (state in `store`), with pictures, a tag tree with
/// colours, assignments, a second location with an exclusion, and saved searches.
fn populated(a: &Computer, engine: &str, store: &str) {
    a.write("2026/tom.jpg", b"tom the cat");
    a.write("2026/rex.png", b"rex the dog");
    a.write("Scans/receipt.jpg", b"paper");
    a.write("Scans/old/letter.jpg", b"an old letter");
    let init = a.json(&["init", &a.lib(), "--name", "first", "--engine", engine, "--store", store]);
    assert_eq!((init["engine"].as_str(), init["store"].as_str()), (Some(engine), Some(store)), "{init:#}");
    assert_eq!(library_json(a)["engine"], engine);
    a.ok(&["location", "add", &a.library.join("Scans").display().to_string()]);
    a.ok(&["index"]);
    a.ok(&["tag", "create", "Animals/Cats", "--color", "orange"]);
    a.ok(&["tag", "create", "Animals/Dogs"]);
    a.ok(&["tag", "create", "Paper"]);
    a.ok(&["tag", "add", "2026/tom.jpg", "Animals/Cats"]);
    a.ok(&["tag", "add", "2026/rex.png", "Animals/Dogs", "Animals"]);
    a.ok(&["tag", "add", "Scans/receipt.jpg", "Paper"]);
    a.ok(&["tag", "rename", "Animals/Dogs", "Doggos"]);
    a.ok(&["search", "save", "Cats", "--where", "tag", "contains", "Animals/Cats"]);
    a.ok(&[
        "search",
        "save",
        "Big or paper",
        "--any",
        "--where",
        "size",
        ">",
        "4kB",
        "--where",
        "tag",
        "contains",
        "Paper",
    ]);
}

#[test]
fn automerge_library_in_lmdb_joined_with_sqlite_converges() {
    let w = World::new();
    let laptop = w.computer("laptop");
    let desktop = w.computer("desktop");
    populated(&laptop, "automerge", "lmdb");
    laptop.ok(&["sync", "--once"]);

    copy_new(&laptop.library, &desktop.library, "");
    // The engine comes from library.json; the store is this computer's choice.
    let joined = desktop.json(&["join", &desktop.lib(), "--name", "second", "--store", "sqlite"]);
    assert_eq!((joined["engine"].as_str(), joined["store"].as_str()), (Some("automerge"), Some("sqlite")));
    assert_eq!(joined["tags"], 4, "{joined:#}");
    assert_eq!(desktop.json(&["index"])["added"], 0, "the same pictures are the same records");
    assert_eq!(desktop.tags_of("2026/rex.png"), ["Animals", "Animals/Doggos"]);
    let status = laptop.json(&["status"]);
    assert_eq!((status["engine"].as_str(), status["store"].as_str()), (Some("automerge"), Some("lmdb")));

    // Concurrent edits on both, including one field of one tag on each.
    laptop.ok(&["tag", "rename", "Animals/Cats", "Kitties"]);
    desktop.ok(&["tag", "color", "Animals/Cats", "red"]);
    desktop.ok(&["tag", "create", "Places/Rome"]);
    laptop.ok(&["tag", "remove", "2026/rex.png", "Animals"]);
    desktop.ok(&["tag", "add", "Scans/old/letter.jpg", "Paper"]);
    let export = converge(&laptop, &desktop);
    assert_eq!(laptop.export(), desktop.export(), "byte-identical exports");
    let e: Value = serde_json::from_str(&export).unwrap();
    let kitties = e["tags"].as_object().unwrap().values().find(|t| t["name"] == "Kitties").expect("renamed tag");
    assert_eq!(kitties["color"], "red", "rename on one computer and recolour on the other both survive");
    assert_eq!(desktop.tags_of("2026/rex.png"), ["Animals/Doggos"]);
    assert_eq!(laptop.tags_of("Scans/old/letter.jpg"), ["Paper"]);
    // Every segment on the shared folder is an automerge segment, and both computers agree.
    let verify = desktop.json(&["verify"]);
    assert_eq!(verify["ok"], true, "{verify:#}");
}

#[test]
fn join_with_the_other_engine_is_refused() {
    let w = World::new();
    let laptop = w.computer("laptop");
    laptop.ok(&["init", &laptop.lib(), "--engine", "automerge", "--store", "lmdb"]);
    let desktop = w.computer("desktop");
    copy_new(&laptop.library, &desktop.library, "");
    let msg = desktop.fails(&["join", &desktop.lib(), "--engine", "yrs"], 1);
    assert!(msg.contains("wrong engine") && msg.contains("automerge") && msg.contains("yrs"), "{msg}");
    assert!(!desktop.state.as_ref().unwrap().join("state.json").exists(), "nothing set up");
    // Naming the library's own engine is fine.
    let joined = desktop.json(&["join", &desktop.lib(), "--engine", "automerge"]);
    assert_eq!(joined["engine"], "automerge");
}

/// Exports the library on `old`, imports it into a new library of engine `to` made on a fresh
/// copy of the pictures, and checks the new library equals the old one.
fn migrate(w: &World, from: &str, to: &str) {
    let old = w.computer("old");
    populated(&old, from, "sqlite");
    let backup = w.path().join("library-export.json");
    old.ok(&["export", "--output", &backup.display().to_string()]);
    let original = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(original, old.export());

    // A fresh library folder with the same pictures but no onefolder_tags.
    let new = w.computer("new");
    for rel in ["2026/tom.jpg", "2026/rex.png", "Scans/receipt.jpg", "Scans/old/letter.jpg"] {
        new.write(rel, &std::fs::read(old.library.join(rel)).unwrap());
    }
    let init = new.json(&["init", &new.lib(), "--name", "migrated", "--engine", to]);
    assert_eq!(init["engine"], to);
    assert_eq!(library_json(&new)["engine"], to);
    let report = new.json(&["import", &backup.display().to_string()]);
    assert_eq!(report["mode"], "replace", "{report:#}");
    assert_eq!(report["tags"]["added"], 4, "{report:#}");
    assert_eq!(report["files"]["added"], 4, "{report:#}");

    let migrated = new.export();
    let (a, b): (Value, Value) = (serde_json::from_str(&original).unwrap(), serde_json::from_str(&migrated).unwrap());
    for part in ["files", "tags", "locations", "searches"] {
        assert!(!a[part].as_object().unwrap().is_empty(), "{part} is part of the test");
        assert_eq!(a[part], b[part], "{part}: ids and fields survive the move from {from} to {to}");
    }
    assert_eq!(original, migrated, "the whole canonical export is the same");
    // The pictures on disk are the records imported: indexing adds nothing.
    assert_eq!(new.json(&["index"])["added"], 0);
    assert_eq!(new.tags_of("2026/rex.png"), ["Animals", "Animals/Doggos"]);
    // The migrated library syncs like any other: a second computer joins it.
    new.ok(&["sync", "--once"]);
    let other = w.computer("other");
    copy_new(&new.library, &other.library, "");
    let joined = other.json(&["join", &other.lib(), "--name", "other"]);
    assert_eq!(joined["engine"], to);
    converge(&new, &other);
    assert_eq!(other.tags_of("2026/tom.jpg"), ["Animals/Cats"]);
}

#[test]
fn yrs_library_migrates_to_automerge_by_export_and_import() {
    migrate(&World::new(), "yrs", "automerge");
}

#[test]
fn automerge_library_migrates_to_yrs_by_export_and_import() {
    migrate(&World::new(), "automerge", "yrs");
}

//! `import-prototype` on the committed prototype library (`tests/fixtures/prototype/library`,
//! two sessions written by `tests/fixtures/prototype/maker/make-fixture.js` on npm yjs; the
//! story is told there), on both engines: what `export`, `files`, `tags`, `location list` and
//! `search run` show afterwards, that a second computer gets it by sync, that a corrupt
//! database file is warned about and skipped, and that nothing readable changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::{Computer, World, copy_new};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/prototype/library");

/// Where the two computers of the fixture had the library folder.
const WAS: [&str; 4] = ["--was", "/home/ann/Pictures", "--was", "/Users/ann/Pictures"];

/// A library on `c` in a folder that holds the prototype's database (as a folder the
/// prototype used does when onefolder-sync is set up there).
fn library_with_prototype(c: &Computer, engine: &str) {
    copy_new(Path::new(FIXTURE), &c.library, "");
    c.ok(&["init", &c.lib(), "--name", "laptop", "--engine", engine]);
}

fn import(c: &Computer, extra: &[&str]) -> Value {
    let mut args = vec!["import-prototype", c.library.to_str().unwrap()];
    args.extend_from_slice(extra);
    c.json(&args)
}

fn imports_on(engine: &str) {
    let w = World::new();
    let a = w.computer("laptop");
    library_with_prototype(&a, engine);
    let r = import(&a, &WAS);
    assert_eq!(
        (&r["files"], &r["tags"], &r["locations"], &r["searches"]),
        (&5.into(), &7.into(), &2.into(), &1.into()),
        "{r:#}"
    );
    assert_eq!(r["duplicatesMerged"], serde_json::json!({"files": 2, "tags": 1, "locations": 2}));
    assert_eq!(r["skipped"], 3);
    let warnings: Vec<&str> = r["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(
        warnings,
        [
            "tag \"t-bad\": name is not a string (skipped)",
            "file \"f-bad\": relativePath is not a string (skipped)",
            "search \"s-bad\": has no name (skipped)"
        ]
    );
    let sessions = r["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s["read"] == true), "{r:#}");
    assert_eq!(r["unmapped"], serde_json::json!([{"id": "l-scans", "name": "Scans", "path": "/mnt/archive/Scans"}]));

    // The library's export: the library folder (three prototype locations) and Scans.
    let export: Value = serde_json::from_str(&a.export()).unwrap();
    let locations = export["locations"].as_object().unwrap();
    assert_eq!(locations.len(), 2, "{export:#}");
    let (root, root_location) = locations.iter().find(|(_, l)| l["relPath"] == "").expect("the library folder");
    assert_eq!(root_location["exclusions"], serde_json::json!(["Private"]));
    assert_eq!(locations["l-scans"]["relPath"], Value::Null);
    assert_eq!(locations["l-scans"]["name"], "Scans");
    assert_eq!(export["files"].as_object().unwrap().len(), 5);
    assert_eq!(export["tags"].as_object().unwrap().len(), 7);
    assert!(!a.export().contains("/home/ann") && !a.export().contains("/Users/ann"), "no prototype path is shared");

    // Where the locations are on this computer.
    let listed = a.json(&["location", "list"]);
    let by_id: BTreeMap<&str, &Value> =
        listed.as_array().unwrap().iter().map(|l| (l["id"].as_str().unwrap(), l)).collect();
    assert_eq!(by_id[root.as_str()]["path"], a.library.canonicalize().unwrap().display().to_string());
    assert_eq!(by_id[root.as_str()]["files"], 4);
    assert_eq!((&by_id["l-scans"]["path"], &by_id["l-scans"]["files"]), (&Value::Null, &1.into()));

    // The tag tree, in the order of the prototype's subTags.
    let tags = a.json(&["tags"]);
    let paths: Vec<&str> = tags.as_array().unwrap().iter().map(|t| t["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["Places", "Places/Beach", "Animals", "Animals/Doggos", "Animals/Cats", "Paper", "Cute"]);
    let tag = |path: &str| tags.as_array().unwrap().iter().find(|t| t["path"] == path).unwrap();
    assert_eq!(tag("Animals")["color"], "#ffaa00");
    assert_eq!(tag("Places/Beach")["color"], "blue");
    assert_eq!(tag("Animals/Doggos")["hidden"], true, "the desktop's rename and the laptop's hidden flag");
    let cute = &export["tags"][tag("Cute")["id"].as_str().unwrap()];
    assert_eq!(cute["implied"], serde_json::json!([tag("Animals")["id"]]));
    assert_eq!(cute["dateAdded"], 1_709_632_800_000_i64, "2024-03-05T10:00:00.000Z");

    // Files, with the tags of every record that was the same file.
    let shown: Vec<String> = a.file_ids().into_keys().collect();
    assert_eq!(shown, ["2024/cat.jpg", "2024/dog.png", "2024/tom.jpg", "2025/beach.jpg", "[Scans]/receipt.jpg"]);
    assert_eq!(a.tags_of("2024/cat.jpg"), ["Animals", "Animals/Cats", "Cute"]);
    assert_eq!(a.tags_of("2024/dog.png"), ["Animals/Doggos", "Cute"]);
    assert!(a.tags_of("2024/tom.jpg").is_empty());
    assert_eq!(a.tags_of("2025/beach.jpg"), ["Places/Beach"]);
    assert_eq!(a.tags_of("[Scans]/receipt.jpg"), ["Paper"]);
    let cat = &export["files"][&a.file_ids()["2024/cat.jpg"]];
    assert_eq!(cat["annotations"], "on the sofa");
    assert_eq!((&cat["size"], &cat["width"], &cat["height"]), (&1000.into(), &640.into(), &480.into()));
    assert_eq!(cat["dateAdded"], 1_709_371_800_000_i64, "the earliest of the three records: 2024-03-02T09:30Z");
    assert_eq!(export["files"][&a.file_ids()["2024/dog.png"]]["width"], Value::Null, "0 is unknown");

    // The saved search still finds the cats (its tag id follows the tag).
    let found = a.json(&["search", "run", "Cats"]);
    let found: Vec<&str> = found.as_array().unwrap().iter().map(|f| f["shown"].as_str().unwrap()).collect();
    assert_eq!(found, ["2024/cat.jpg"]);

    // Importing again changes nothing; another computer gets the import by sync.
    let before = a.export();
    assert_eq!(import(&a, &WAS)["edits"], 0);
    assert_eq!(a.export(), before);
    a.ok(&["sync", "--once"]);
    let b = w.computer("desktop");
    copy_new(&a.library, &b.library, "");
    b.ok(&["join", &b.lib(), "--name", "desktop"]);
    assert_eq!(b.export(), before);
}

#[test]
fn the_prototype_imports_into_a_yrs_library() {
    imports_on("yrs");
}

#[test]
fn the_prototype_imports_into_an_automerge_library() {
    imports_on("automerge");
}

#[test]
fn without_was_the_other_computers_locations_stay_apart_and_the_text_says_so() {
    let w = World::new();
    let a = w.computer("laptop");
    library_with_prototype(&a, "yrs");
    // FOLDER may be the onefolder_tags folder too.
    let out = a.ok(&["import-prototype", a.library.join("onefolder_tags").to_str().unwrap()]);
    assert!(out.contains("(2 of 2 session files)"), "{out}");
    assert!(out.contains("6 files, 7 tags, 3 locations, 1 saved search"), "{out}");
    assert!(out.contains("skipped 3 bad records"), "{out}");
    assert!(out.contains("--as l-desk") && out.contains("--was /Users/ann/Pictures"), "{out}");
    assert!(out.contains("--as l-home") && out.contains("--was /home/ann/Pictures"), "{out}");
}

#[test]
fn a_corrupt_database_file_is_warned_about_and_the_rest_imports() {
    let w = World::new();
    let a = w.computer("laptop");
    library_with_prototype(&a, "yrs");
    let database = a.library.join("onefolder_tags/database");
    let broken = database.join("0-broken-session/database.yjs.db");
    crate::common::write_file(&broken, b"\xff\xff\xff\x7f not a Yjs update");
    let out = a.cmd().args(["import-prototype"]).arg(database.as_os_str()).args(WAS).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("warning: ")
            && l.contains(&broken.display().to_string())
            && l.contains("not a Yjs update")),
        "{stderr}"
    );
    assert!(stdout.contains("(2 of 3 session files)") && stdout.contains("5 files, 7 tags"), "{stdout}");
    assert_eq!(a.file_ids().len(), 5);
}

#[test]
fn nothing_readable_is_an_error_that_changes_nothing() {
    let w = World::new();
    let a = w.computer("laptop");
    a.ok(&["init", &a.lib(), "--name", "laptop"]);
    let before = a.export();
    // No database at all: a user error.
    let err = a.fails(&["import-prototype", &a.lib()], 1);
    assert!(err.contains("holds no database of OneFolder's prototype"), "{err}");
    // Only a damaged one: corruption found, with its warning first.
    crate::common::write_file(&a.library.join("onefolder_tags/database/s1/database.yjs.db"), b"garbage");
    let out = a.run(&["import-prototype", &a.lib()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("warning: ") && lines[0].ends_with("; skipped"), "{stderr}");
    assert!(lines[1].starts_with("error: no database file of OneFolder's prototype in "), "{stderr}");
    assert_eq!(a.export(), before);
}

#[test]
fn the_import_runs_inside_a_running_watch() {
    let w = World::new();
    let a = w.computer("laptop");
    library_with_prototype(&a, "yrs");
    let mut watch = crate::watch::Watch::start(&a, &["--debounce", "0.2"]);
    watch.wait_for("watching");
    // Nothing may wait for the store: the watch runs the command, with FOLDER relative to the
    // caller's working directory.
    let out = a
        .cmd()
        .env("ONEFOLDER_SYNC_WAIT", "0")
        .current_dir(a.library.parent().unwrap())
        .args(["--json", "import-prototype", "Pictures"])
        .args(WAS)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&r["files"], &r["skipped"]), (&5.into(), &3.into()), "{r:#}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: tag \"t-bad\""));
    assert_eq!(a.tags_of("2024/cat.jpg"), ["Animals", "Animals/Cats", "Cute"]);
    watch.wait_for("wrote");
    watch.stop();
}

//! `backup`, `backup --list`, `peek`, and `import` of a backup file; damaged and foreign
//! backups are refused with one line and change nothing.

use crate::common::{World, assert_one_line_error, pair};

#[test]
fn backup_lists_peeks_and_restores() {
    let w = World::new();
    let (laptop, _) = pair(&w);
    laptop.ok(&["tag", "create", "Animals/Cats", "--color", "orange"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Animals/Cats"]);
    let kept = laptop.export();

    let written = laptop.json(&["backup"]);
    let file = written["file"].as_str().expect("the file written").to_owned();
    assert!(file.contains("onefolder_tags/backups/") && file.ends_with(".ofsbackup"), "{file}");
    assert_eq!((written["tags"].as_u64(), written["files"].as_u64()), (Some(2), Some(2)));
    let explicit = w.path().join("elsewhere.ofsbackup");
    laptop.ok(&["backup", &explicit.display().to_string()]);

    let list = laptop.json(&["backup", "--list"]);
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 1, "only the default folder is listed: {list:?}");
    assert_eq!(list[0]["header"]["tags"].as_u64(), Some(2));
    assert!(laptop.ok(&["backup", "--list"]).contains("2 tags, 2 files"));

    // `peek` needs no library.
    let peeked = w.cmd().args(["--json", "peek", &file]).output().unwrap();
    assert!(peeked.status.success(), "{}", String::from_utf8_lossy(&peeked.stderr));
    let header: serde_json::Value = serde_json::from_slice(&peeked.stdout).unwrap();
    assert_eq!((header["tags"].as_u64(), header["engine"].as_str()), (Some(2), Some("yrs")));
    let text = w.cmd().args(["peek", &file]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("2 tags, 2 files, 1 location, 0 saved searches"));

    laptop.ok(&["tag", "delete", "Animals"]);
    laptop.ok(&["tag", "create", "Later"]);
    assert_ne!(laptop.export(), kept);
    laptop.ok(&["import", &file]);
    assert_eq!(laptop.export(), kept, "the library equals the backup again");
}

#[test]
fn damaged_or_foreign_backups_change_nothing() {
    let w = World::new();
    let (laptop, _) = pair(&w);
    laptop.ok(&["tag", "create", "Keep"]);
    let file = laptop.json(&["backup"])["file"].as_str().unwrap().to_owned();
    let good = std::fs::read(&file).unwrap();
    laptop.ok(&["tag", "create", "After"]);
    let before = laptop.export();

    let damaged = w.path().join("damaged.ofsbackup");
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x01;
    std::fs::write(&damaged, &flipped).unwrap();
    let truncated = w.path().join("truncated.ofsbackup");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    for (path, reason) in [(&damaged, "checksum"), (&truncated, "truncated")] {
        let p = path.display().to_string();
        let msg = laptop.fails(&["import", &p], 2);
        assert!(msg.contains(reason), "{msg}");
        let out = w.cmd().args(["peek", &p]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_one_line_error(&String::from_utf8_lossy(&out.stderr));
    }
    let junk = w.path().join("notes.ofsbackup");
    std::fs::write(&junk, b"shopping list").unwrap();
    let msg = laptop.fails(&["import", &junk.display().to_string()], 1);
    assert!(msg.contains("not a onefolder-sync"), "{msg}");

    // A backup of another library.
    let other = w.computer("other");
    other.ok(&["init", &other.lib(), "--name", "other"]);
    let foreign = other.json(&["backup"])["file"].as_str().unwrap().to_owned();
    let msg = laptop.fails(&["import", &foreign], 1);
    assert!(msg.contains("backup of library"), "{msg}");

    assert_eq!(laptop.export(), before, "nothing changed");
    let list = laptop.json(&["backup", "--list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

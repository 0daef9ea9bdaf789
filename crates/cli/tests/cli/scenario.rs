//! Two computers through every command; their exports converge byte for byte.

use serde_json::Value;

use crate::common::{Computer, World, converge, copy_new, exchange, pair, write_file};

fn tag_id(c: &Computer, path: &str) -> String {
    let tags = c.json(&["tags"]);
    tags.as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == path)
        .unwrap_or_else(|| panic!("no tag {path}: {tags:#}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn tag_paths(c: &Computer) -> Vec<String> {
    c.json(&["tags"]).as_array().unwrap().iter().map(|t| t["path"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn init_index_join_and_concurrent_edits_converge() {
    let w = World::new();
    let laptop = w.computer("laptop");
    let desktop = w.computer("desktop");
    laptop.write("2026/tom.jpg", b"tom the cat");
    laptop.write("2026/rex.png", b"rex the dog");
    laptop.write("notes.txt", b"shopping list");
    laptop.write("cat (Anna's conflicted copy 2026-11-02).jpg", b"a conflict copy is a picture");
    // Files the sync clients and operating systems leave around are never indexed.
    for junk in [".DS_Store", "Thumbs.db", "desktop.ini", "2026/upload.jpg.tmp", ".stfolder/marker", ".dropbox"] {
        laptop.write(junk, b"junk");
    }

    let init = laptop.json(&["init", &laptop.lib(), "--name", "laptop"]);
    assert_eq!(init["engine"], "yrs");
    assert!(laptop.library.join("onefolder_tags/library.json").is_file());
    let index = laptop.json(&["index"]);
    assert_eq!(index["added"], 4, "{index:#}");
    let shown: Vec<String> = laptop.file_ids().into_keys().collect();
    assert_eq!(shown, ["2026/rex.png", "2026/tom.jpg", "cat (Anna's conflicted copy 2026-11-02).jpg", "notes.txt"]);
    // Indexing again with nothing changed writes nothing.
    let pending = laptop.json(&["status"])["pendingEdits"].clone();
    let again = laptop.json(&["index"]);
    assert_eq!(
        (again["added"].clone(), again["updated"].clone(), again["unchanged"].clone()),
        (0.into(), 0.into(), 4.into())
    );
    assert_eq!(laptop.json(&["status"])["pendingEdits"], pending);

    laptop.ok(&["tag", "create", "Animals/Cats", "--color", "orange"]);
    laptop.ok(&["tag", "create", "Animals/Dogs"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Animals/Cats"]);
    laptop.ok(&["tag", "add", "2026/rex.png", "Animals/Dogs", "Animals"]);
    let flushed = laptop.json(&["sync", "--once"]);
    assert!(flushed["flushed"]["seq"].as_u64().unwrap() >= 1, "{flushed:#}");

    // The sync client brings the folder (pictures and onefolder_tags) to the desktop.
    copy_new(&laptop.library, &desktop.library, "");
    let joined = desktop.json(&["join", &desktop.lib(), "--name", "desktop"]);
    assert_eq!(joined["libraryId"], init["libraryId"]);
    assert_eq!(joined["tags"], 3);
    // The desktop indexes the same pictures: the same ids, nothing new.
    let index = desktop.json(&["index"]);
    assert_eq!((index["added"].clone(), index["unchanged"].clone()), (0.into(), 4.into()), "{index:#}");
    assert_eq!(desktop.file_ids(), laptop.file_ids());
    assert_eq!(desktop.tags_of("2026/tom.jpg"), ["Animals/Cats"]);

    // Each computer now has pictures of its own, and both edit while offline.
    desktop.write("2026/colosseum.jpg", b"rome at night");
    desktop.ok(&["index"]);
    laptop.ok(&["tag", "rename", "Animals/Cats", "Kitties"]);
    desktop.ok(&["tag", "color", "Animals/Cats", "red"]);
    desktop.ok(&["tag", "create", "Places/Rome"]);
    laptop.ok(&["tag", "create", "Places/Rome", "--color", "green"]);
    desktop.ok(&["tag", "add", "2026/colosseum.jpg", "Places/Rome"]);
    laptop.ok(&["tag", "remove", "2026/rex.png", "Animals/Dogs"]);
    desktop.ok(&["tag", "add", "2026/rex.png", "Animals/Dogs"]);
    // A rename on disk: the tags follow the picture.
    std::fs::rename(laptop.library.join("2026/tom.jpg"), laptop.library.join("2026/tom-cat.jpg")).unwrap();
    let index = laptop.json(&["index"]);
    assert_eq!(index["moved"][0], serde_json::json!({"from": "2026/tom.jpg", "to": "2026/tom-cat.jpg"}));
    assert_eq!(laptop.tags_of("2026/tom-cat.jpg"), ["Animals/Kitties"]);

    let export = converge(&laptop, &desktop);
    let e: Value = serde_json::from_str(&export).unwrap();
    let cats = tag_id(&laptop, "Animals/Kitties");
    assert_eq!(e["tags"][&cats]["name"], "Kitties", "rename on one computer");
    assert_eq!(e["tags"][&cats]["color"], "red", "recolour on the other");
    assert_eq!(tag_paths(&desktop).iter().filter(|p| *p == "Places/Rome").count(), 1, "one Rome, not two");
    assert_eq!(desktop.tags_of("2026/rex.png"), ["Animals", "Animals/Dogs"], "a concurrent add wins over a remove");
    assert_eq!(desktop.tags_of("2026/tom-cat.jpg"), ["Animals/Kitties"]);
    assert_eq!(laptop.tags_of("2026/colosseum.jpg"), ["Places/Rome"]);
    // The canonical export: sorted keys, paths and sorted tag ids in file records.
    for (id, f) in e["files"].as_object().unwrap() {
        assert!(f["path"].is_string() && f["tags"].is_array(), "{id}: {f}");
    }
    for t in e["tags"].as_object().unwrap().values() {
        assert!(t["name"].is_string() && t.get("parent").is_some() && t.get("color").is_some(), "{t}");
    }
    let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["files", "locations", "searches", "tags"]);
}

#[test]
fn locations_are_matched_not_duplicated() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);

    // The database folder is never a location.
    let msg = laptop.fails(&["location", "add", &laptop.library.join("onefolder_tags").display().to_string()], 1);
    assert!(msg.contains("ignores"), "{msg}");
    // A folder inside the library folder: the same location everywhere.
    laptop.write("Scans/receipt.jpg", b"paper");
    let added = laptop.json(&["location", "add", &laptop.library.join("Scans").display().to_string()]);
    assert_eq!(added["outcome"], "created");
    let index = laptop.json(&["index"]);
    assert_eq!(index["added"], 1, "the scan belongs to the inner location only: {index:#}");
    let shown: Vec<String> = laptop.file_ids().into_keys().collect();
    assert_eq!(shown, ["2026/rex.png", "2026/tom.jpg", "Scans/receipt.jpg"]);

    // A folder outside the library folder, at a different place on each computer.
    let outside_a = w.path().join("laptop/Phone Camera");
    let outside_b = w.path().join("desktop/elsewhere/Phone Camera");
    write_file(&outside_a.join("IMG_0001.jpg"), b"a photo from the phone");
    write_file(&outside_b.join("IMG_0001.jpg"), b"a photo from the phone");
    let phone = laptop.json(&["location", "add", &outside_a.display().to_string()]);
    assert_eq!(phone["outcome"], "created");
    laptop.ok(&["index"]);
    converge(&laptop, &desktop);

    // On the desktop, the inner folder arrives with the sync client; both are matched.
    copy_new(&laptop.library, &desktop.library, "Scans");
    let scans = desktop.json(&["location", "add", &desktop.library.join("Scans").display().to_string()]);
    assert_eq!((scans["outcome"].clone(), scans["id"].clone()), ("matched".into(), added["id"].clone()));
    let listed = desktop.json(&["location", "list"]);
    let mapped = listed.as_array().unwrap().iter().find(|l| l["id"] == phone["id"]).unwrap().clone();
    assert_eq!(mapped["path"], Value::Null, "not on this computer yet: {listed:#}");
    let matched = desktop.json(&["location", "add", &outside_b.display().to_string()]);
    assert_eq!((matched["outcome"].clone(), matched["id"].clone()), ("matched".into(), phone["id"].clone()));
    let index = desktop.json(&["index"]);
    assert_eq!(index["added"], 0, "same files, same ids: {index:#}");
    let listed = desktop.json(&["location", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let here = listed.as_array().unwrap().iter().find(|l| l["id"] == phone["id"]).unwrap().clone();
    assert_eq!(here["path"], outside_b.canonicalize().unwrap().display().to_string(), "its path is local");

    let export = converge(&laptop, &desktop);
    assert!(!export.contains(&w.path().display().to_string()), "no absolute path is shared");
    let e: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(e["locations"].as_object().unwrap().len(), 3);

    // Removing a location removes its file records everywhere.
    desktop.fails(&["location", "remove", "Pictures"], 1);
    let removed = desktop.json(&["location", "remove", phone["id"].as_str().unwrap()]);
    assert_eq!(removed["files"], 1);
    let export = converge(&laptop, &desktop);
    let e: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(e["locations"].as_object().unwrap().len(), 2);
    assert!(!export.contains("IMG_0001"));
}

#[test]
fn index_follows_the_disk() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    laptop.ok(&["tag", "create", "Cats"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Cats"]);

    // A picture vanishes: its record stays, marked missing, with its tags; it comes back.
    let tom = laptop.library.join("2026/tom.jpg");
    let bytes = std::fs::read(&tom).unwrap();
    std::fs::remove_file(&tom).unwrap();
    let index = laptop.json(&["index"]);
    assert_eq!(index["missing"], 1, "{index:#}");
    assert!(laptop.ok(&["files"]).contains("2026/tom.jpg (missing)\tCats"));
    std::fs::write(&tom, &bytes).unwrap();
    let index = laptop.json(&["index"]);
    assert_eq!((index["back"].clone(), index["missing"].clone()), (1.into(), 0.into()), "{index:#}");

    // Edited content: the same record, updated.
    laptop.write("2026/rex.png", b"rex, retouched");
    let index = laptop.json(&["index"]);
    assert_eq!(index["updated"], 1, "{index:#}");

    // A move into another location: the tags follow it there.
    laptop.write("Archive/.keep-me-hidden", b"");
    let archive = laptop.json(&["location", "add", &laptop.library.join("Archive").display().to_string()]);
    std::fs::rename(&tom, laptop.library.join("Archive/tom.jpg")).unwrap();
    let index = laptop.json(&["index", "--location", archive["id"].as_str().unwrap()]);
    assert_eq!(index["locations"].as_array().unwrap().len(), 1, "only that location: {index:#}");
    assert_eq!(index["moved"][0], serde_json::json!({"from": "2026/tom.jpg", "to": "Archive/tom.jpg"}), "{index:#}");
    assert_eq!(index["added"], 0);
    assert_eq!(laptop.tags_of("Archive/tom.jpg"), ["Cats"]);
    let index = laptop.json(&["index"]);
    assert_eq!((index["added"].clone(), index["missing"].clone()), (0.into(), 0.into()), "{index:#}");
    laptop.fails(&["index", "--location", "Nowhere"], 1);

    // The desktop gets the move through the sync client; its index agrees.
    converge(&laptop, &desktop);
    copy_new(&laptop.library, &desktop.library, "Archive");
    std::fs::remove_file(desktop.library.join("2026/tom.jpg")).unwrap();
    std::fs::write(desktop.library.join("2026/rex.png"), b"rex, retouched").unwrap();
    let index = desktop.json(&["index"]);
    assert_eq!((index["added"].clone(), index["missing"].clone()), (0.into(), 0.into()), "{index:#}");
    assert_eq!(desktop.tags_of("Archive/tom.jpg"), ["Cats"]);
    converge(&laptop, &desktop);
}

/// Whether `files` shows a file as missing on this computer.
fn shown_missing(c: &Computer, shown: &str) -> bool {
    let files = c.json(&["files"]);
    files.as_array().unwrap().iter().any(|f| f["shown"] == shown && f["missing"] == true)
}

#[test]
fn presence_is_per_computer() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    laptop.ok(&["tag", "create", "Late"]);
    laptop.write("2026/late.jpg", b"a picture the sync client brings late");
    laptop.ok(&["index"]);
    laptop.ok(&["tag", "add", "2026/late.jpg", "Late"]);
    laptop.ok(&["sync", "--once"]);
    // The database arrives on the desktop before the picture does.
    exchange(&laptop, &desktop);
    desktop.ok(&["sync", "--once"]);
    let index = desktop.json(&["index"]);
    assert_eq!(index["missing"], 1, "{index:#}");
    assert!(shown_missing(&desktop, "2026/late.jpg"));
    // Missing on the desktop is the desktop's own fact: no edit, nothing for the laptop.
    assert_eq!(desktop.json(&["status"])["pendingEdits"], 0);
    converge(&laptop, &desktop);
    assert!(!shown_missing(&laptop, "2026/late.jpg"));
    let index = laptop.json(&["index"]);
    assert_eq!((index["missing"].clone(), index["back"].clone()), (0.into(), 0.into()), "{index:#}");

    // Seconds later the sync client has brought it: present on the desktop too, tags intact.
    copy_new(&laptop.library, &desktop.library, "2026");
    let index = desktop.json(&["index"]);
    assert_eq!((index["back"].clone(), index["added"].clone()), (1.into(), 0.into()), "{index:#}");
    assert!(!shown_missing(&desktop, "2026/late.jpg"));
    assert_eq!(desktop.tags_of("2026/late.jpg"), ["Late"]);

    // An online-only placeholder (0 bytes) and a download in progress are not read: neither
    // marked missing nor changed, and nothing new is added for the partial file.
    std::fs::write(desktop.library.join("2026/rex.png"), b"").unwrap();
    write_file(&desktop.library.join("2026/.syncthing.cat.jpg.tmp"), b"half a cat");
    write_file(&desktop.library.join("2026/~cat.jpg.tmp"), b"half a cat");
    let index = desktop.json(&["index"]);
    assert_eq!(
        (index["missing"].clone(), index["added"].clone(), index["updated"].clone()),
        (0.into(), 0.into(), 0.into()),
        "{index:#}"
    );
    let skipped = index["skipped"].to_string();
    assert!(skipped.contains("rex.png") && skipped.contains("online-only"), "{skipped}");
    assert!(!shown_missing(&desktop, "2026/rex.png"));
    assert_eq!(desktop.json(&["status"])["pendingEdits"], 0);
    assert_eq!(converge(&laptop, &desktop), laptop.export());
}

#[test]
fn own_segments_emptied_on_the_shared_folder_are_published_again() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    converge(&laptop, &desktop);
    laptop.ok(&["tag", "create", "Kept"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Kept"]);
    laptop.ok(&["sync", "--once"]);
    // Before the sync client carried them anywhere, something empties every segment the laptop
    // published (a conflict resolution, a user, a sync client gone wrong).
    let own = laptop.json(&["status"])["device"].as_str().unwrap().to_owned();
    let folder = laptop.library.join("onefolder_tags/database").join(&own);
    let mut emptied = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            std::fs::write(&path, b"").unwrap();
            emptied += 1;
        }
    }
    assert!(emptied >= 2, "{emptied}");
    // The laptop's next sync notices and publishes the library again; the desktop gets it all.
    let out = laptop.ok(&["sync", "--once"]);
    assert!(out.contains("published the whole library again"), "{out}");
    exchange(&laptop, &desktop);
    desktop.ok(&["sync", "--once"]);
    assert_eq!(desktop.tags_of("2026/tom.jpg"), ["Kept"]);
    assert_eq!(converge(&laptop, &desktop), laptop.export());
    // Published once: the next sync has nothing to repair.
    assert!(laptop.ok(&["sync", "--once"]).contains("no edits to write"));
}

#[test]
fn two_inits_on_one_folder_are_merged_into_one_library() {
    let w = World::new();
    let laptop = w.computer("laptop");
    let desktop = w.computer("desktop");
    for c in [&laptop, &desktop] {
        c.write("2026/tom.jpg", b"tom the cat");
        c.write("2026/rex.png", b"rex the dog");
    }
    // Both computers run `init` before the sync client has carried either library.json over.
    laptop.ok(&["init", &laptop.lib(), "--name", "laptop"]);
    desktop.ok(&["init", &desktop.lib(), "--name", "desktop"]);
    for (c, tag) in [(&laptop, "From the laptop"), (&desktop, "From the desktop")] {
        c.ok(&["index"]);
        c.ok(&["tag", "create", tag]);
        c.ok(&["tag", "add", "2026/tom.jpg", tag]);
        c.ok(&["sync", "--once"]);
    }
    let old_device = desktop.json(&["status"])["device"].as_str().unwrap().to_owned();
    // The sync client keeps the laptop's library.json and the desktop's as a conflict copy,
    // and brings each computer's device folder to the other.
    let tags_dir = |c: &Computer| c.library.join("onefolder_tags");
    let conflict = "library.sync-conflict-20261202-101010-DESKTOP.json";
    std::fs::rename(tags_dir(&desktop).join("library.json"), tags_dir(&desktop).join(conflict)).unwrap();
    std::fs::copy(tags_dir(&laptop).join("library.json"), tags_dir(&desktop).join("library.json")).unwrap();
    std::fs::copy(tags_dir(&desktop).join(conflict), tags_dir(&laptop).join(conflict)).unwrap();
    exchange(&laptop, &desktop);

    // Each side says what happened and names the way out.
    let out = laptop.run(&["sync", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("merge-library"), "{stderr}");
    let msg = desktop.fails(&["tags"], 1);
    assert!(msg.contains("merge-library"), "{msg}");

    // The desktop merges its library into the laptop's and joins it.
    let new_state = w.path().join("desktop/state-merged");
    let merged = desktop.json(&["merge-library", "--new-state", &new_state.display().to_string()]);
    assert_eq!(merged["tags"], 1, "{merged:#}");
    assert!(merged["retiredFiles"].as_u64().unwrap() >= 2, "{merged:#}");
    let mut desktop = w.computer("desktop");
    desktop.state = Some(new_state);
    assert!(!tags_dir(&desktop).join(conflict).exists());
    // The sync client carries the removals over.
    std::fs::remove_file(tags_dir(&laptop).join(conflict)).unwrap();
    std::fs::remove_dir_all(tags_dir(&laptop).join("database").join(&old_device)).unwrap();
    converge(&laptop, &desktop);
    let mut tags = laptop.tags_of("2026/tom.jpg");
    tags.sort();
    assert_eq!(tags, ["From the desktop", "From the laptop"]);
    let out = laptop.run(&["sync", "--once"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("another library"), "no more warnings");
}

#[test]
fn tag_tree_edits_and_saved_searches_converge() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    laptop.write("2026/big.jpg", &vec![7u8; 5000]);
    laptop.ok(&["index"]);
    for t in ["Animals/Cats", "Animals/Dogs", "Pets", "Old/Stuff", "Kittens"] {
        laptop.ok(&["tag", "create", t]);
    }
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Animals/Cats", "Kittens"]);
    laptop.ok(&["tag", "add", "2026/rex.png", "Animals/Dogs", "Old/Stuff"]);
    converge(&laptop, &desktop);

    // Tree edits on both sides.
    laptop.ok(&["tag", "move", "Animals/Dogs", "Pets"]);
    desktop.ok(&["tag", "merge", "Kittens", "Animals/Cats"]);
    desktop.ok(&["tag", "delete", "Old"]);
    laptop.ok(&["tag", "move", "Animals/Cats", "/"]);
    let tree = laptop.ok(&["tags", "--tree"]);
    assert!(tree.contains("Pets") && tree.contains("  Dogs"), "{tree}");
    converge(&laptop, &desktop);
    let mut paths = tag_paths(&desktop);
    paths.sort();
    assert_eq!(paths, ["Animals", "Cats", "Pets", "Pets/Dogs"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["Cats"]);
    assert_eq!(laptop.tags_of("2026/rex.png"), ["Pets/Dogs"]);
    let dogs: Vec<String> = laptop.file_ids().keys().cloned().collect();
    assert_eq!(dogs.len(), 3);
    let pets = laptop.json(&["files", "--tag", "Pets", "--recursive"]);
    assert_eq!(pets.as_array().unwrap().len(), 1);
    assert_eq!(laptop.json(&["files", "--tag", "Pets"]).as_array().unwrap().len(), 0);
    let untagged = laptop.json(&["files", "--untagged"]);
    assert_eq!(untagged[0]["shown"], "2026/big.jpg");

    // Saved searches: saved on one computer, run on the other.
    laptop.ok(&[
        "search",
        "save",
        "Pets or big",
        "--any",
        "--where",
        "tag",
        "contains-recursively",
        "Pets",
        "--where",
        "size",
        ">",
        "4kB",
    ]);
    laptop.ok(&["search", "save", "Cat pictures", "--where", "tag", "contains", "Cats", "--where", "ext", "=", "JPG"]);
    desktop.fails(&["search", "save", "Nothing"], 1);
    converge(&laptop, &desktop);
    let listed = desktop.json(&["search", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["name"], "Cat pictures");
    assert_eq!(listed[0]["criteria"][0]["operator"], "contains");
    let run = desktop.json(&["search", "run", "Pets or big"]);
    let found: Vec<&str> = run.as_array().unwrap().iter().map(|f| f["shown"].as_str().unwrap()).collect();
    assert_eq!(found, ["2026/big.jpg", "2026/rex.png"]);
    let run = desktop.json(&["search", "run", "Cat pictures"]);
    assert_eq!(run.as_array().unwrap().len(), 1);
    assert!(desktop.ok(&["search", "list"]).contains("tags contains Cats"));
    desktop.ok(&["search", "delete", "Cat pictures"]);
    desktop.fails(&["search", "run", "Cat pictures"], 1);
    let export = converge(&laptop, &desktop);
    let e: Value = serde_json::from_str(&export).unwrap();
    assert_eq!(e["searches"].as_object().unwrap().len(), 1);
    // Ad-hoc criteria on `files`.
    let hits = laptop.json(&["files", "--where", "name", "contains", "REX"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
}

#[test]
fn import_restores_on_every_computer() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    laptop.ok(&["tag", "create", "Keep"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Keep"]);
    converge(&laptop, &desktop);
    let backup = w.path().join("backup.json");
    laptop.ok(&["export", "--output", &backup.display().to_string()]);
    let saved = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(saved, laptop.export());

    // Later edits on both computers…
    laptop.ok(&["tag", "create", "Mistake"]);
    desktop.ok(&["tag", "delete", "Keep"]);
    desktop.ok(&["tag", "create", "Another mistake"]);
    converge(&laptop, &desktop);
    assert_ne!(laptop.export(), saved);

    // …are undone by restoring the backup on one of them; the other cannot bring them back.
    let report = desktop.json(&["import", &backup.display().to_string()]);
    assert_eq!(report["tags"]["added"], 1, "{report:#}");
    assert_eq!(report["tags"]["removed"], 2, "{report:#}");
    let export = converge(&laptop, &desktop);
    let restored: Value = serde_json::from_str(&export).unwrap();
    let original: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored["tags"], original["tags"]);
    assert_eq!(restored["files"], original["files"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["Keep"]);

    // Not an export, or an edited one: refused, nothing changes.
    let bad = w.path().join("bad.json");
    std::fs::write(&bad, "{\"files\": 3}").unwrap();
    laptop.fails(&["import", &bad.display().to_string()], 1);
    let mut edited = original.clone();
    let first = edited["files"].as_object().unwrap().keys().next().unwrap().clone();
    edited["files"][&first]["path"] = "somewhere/else.jpg".into();
    std::fs::write(&bad, edited.to_string()).unwrap();
    laptop.fails(&["import", &bad.display().to_string()], 1);
    assert_eq!(laptop.export(), export);
}

#[test]
fn status_and_devices_report_each_computer() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    laptop.ok(&["tag", "create", "Waiting"]);
    let status = laptop.json(&["status"]);
    assert_eq!(status["pendingEdits"], 1);
    assert_eq!(status["deviceName"], "laptop");
    assert!(status["lastFlush"]["seq"].as_u64().is_some(), "{status:#}");
    let text = laptop.ok(&["status"]);
    assert!(text.contains("1 local edit not shared yet"), "{text}");

    laptop.ok(&["sync", "--once"]);
    exchange(&laptop, &desktop);
    // Before the desktop applies it, status shows the waiting segment.
    let status = desktop.json(&["status"]);
    let peer = status["devices"].as_array().unwrap().iter().find(|d| d["name"] == "laptop").unwrap().clone();
    assert!(peer["waiting"].as_u64().unwrap() >= 1, "{status:#}");
    desktop.ok(&["sync", "--once"]);
    let status = desktop.json(&["status"]);
    let peer = status["devices"].as_array().unwrap().iter().find(|d| d["name"] == "laptop").unwrap().clone();
    assert_eq!(peer["waiting"], 0);
    assert_eq!(peer["appliedSeq"], peer["availableSeq"]);
    assert!(peer["lastAppliedMs"].as_i64().unwrap() > 0);

    // A damaged segment is reported with its reason.
    let laptop_id = peer["id"].as_str().unwrap().to_owned();
    let folder = desktop.library.join("onefolder_tags/database").join(&laptop_id);
    std::fs::write(folder.join("00000000000000000099.seg"), b"OFSG garbage").unwrap();
    let status = desktop.json(&["status"]);
    let skipped = status["skippedSegments"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{status:#}");
    assert!(skipped[0]["file"].as_str().unwrap().ends_with("00000000000000000099.seg"));

    let devices = desktop.json(&["devices"]);
    let list = devices.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["thisDevice"], true);
    assert_eq!(list[0]["name"], "desktop");
    assert_eq!(list[1]["name"], "laptop");
    assert!(list[1]["applied"]["lastSeq"].as_u64().unwrap() >= 1);
    desktop.fails(&["devices", "forget", list[0]["id"].as_str().unwrap()], 1);
    desktop.fails(&["devices", "forget", "ffffffff"], 1);
    let forgot = desktop.json(&["devices", "forget", &laptop_id[..8]]);
    assert_eq!(forgot["forgot"], laptop_id);
    assert_eq!(forgot["folderStillShared"], true);
    let devices = desktop.json(&["devices"]);
    assert_eq!(devices[1]["applied"], Value::Null, "nothing recorded about it any more");
    // Its folder is still shared: the next sync reads it again and nothing is lost.
    std::fs::remove_file(folder.join("00000000000000000099.seg")).unwrap();
    desktop.ok(&["sync", "--once"]);
    converge(&laptop, &desktop);
}

//! `verify` and `inspect`: exit code 2 when something is corrupt.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{World, converge, pair};

fn own_segments(c: &crate::common::Computer) -> Vec<PathBuf> {
    let id = c.json(&["status"])["device"].as_str().unwrap().to_owned();
    let dir = c.library.join("onefolder_tags/database").join(id);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn verify_and_inspect_find_a_damaged_segment() {
    let w = World::new();
    let (laptop, desktop) = pair(&w);
    laptop.ok(&["tag", "create", "Animals"]);
    converge(&laptop, &desktop);
    let report = desktop.json(&["verify"]);
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["segments"].as_u64().unwrap() >= 3);

    let inspect = desktop.json(&["inspect"]);
    assert_eq!(inspect["manifest"]["engine"], "yrs");
    assert_eq!(inspect["store"]["records"]["files"], 2);
    assert_eq!(inspect["store"]["records"]["tags"], 1);
    assert!(inspect["store"]["engineBytes"].as_u64().unwrap() > 0);
    let devices = inspect["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().flat_map(|d| d["segments"].as_array().unwrap()).all(|s| s["check"] == "ok"));
    assert!(desktop.ok(&["inspect"]).contains("library id"));

    // One segment of the laptop, as copied onto the desktop, gets a flipped byte.
    let seg = own_segments(&laptop).last().unwrap().clone();
    let copy = desktop.library.join(seg.strip_prefix(&laptop.library).unwrap());
    let good = desktop.json(&["inspect", "segment", &copy.display().to_string()]);
    assert_eq!(good["payloadOk"], true);
    assert_eq!(good["header"]["engine"], "yrs");
    let mut bytes = std::fs::read(&copy).unwrap();
    *bytes.last_mut().unwrap() ^= 0x40;
    std::fs::write(&copy, bytes).unwrap();

    let out = desktop.run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["corrupt"][0].as_str().unwrap().contains("payload checksum"), "{report:#}");
    let text = desktop.run(&["verify"]);
    assert_eq!(text.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&text.stdout).contains("CORRUPT"));
    desktop.fails(&["inspect"], 2);
    let out = desktop.run(&["--json", "inspect", "segment", &copy.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let bad: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bad["payloadOk"], false);
    // Sync skips it (and says so) but keeps working; the data on the other side is intact.
    let status = desktop.json(&["status"]);
    assert!(status["skippedSegments"].as_array().is_some());
    desktop.ok(&["sync", "--once"]);
    // The laptop's own copy is fine.
    assert_eq!(laptop.json(&["verify"])["ok"], true);
}

#[test]
fn a_damaged_local_store_exits_2() {
    let w = World::new();
    let (laptop, _) = pair(&w);
    let db = laptop.state.as_ref().unwrap().join("state.sqlite3");
    assert!(db.is_file());
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let out = laptop.run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["store"]["ok"], false);
    laptop.fails(&["tags"], 2);
}

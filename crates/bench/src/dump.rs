//! Step `dump`: the workload as one JSON file in OneFolder's DTO shapes, for benchmarks outside
//! Rust (`crates/node/bench/data-storage.js`, issue 16: the Node binding's `fetchFiles` and
//! `searchFiles` against the prototype's Yjs document).
//!
//! The records are the prototype's ([`prototype::location_record`], [`prototype::tag_record`],
//! [`prototype::file_record`]: the DTOs with dates as ms since the epoch), with two changes:
//!
//! - every file gets its own `dateAdded` (and `dateLastIndexed`): [`file_date_added`], one
//!   second apart in an order unrelated to the file index, so that a listing sorted by
//!   `dateAdded` has one right order and is not the creation order;
//! - every location also carries `relativeFolder`, its folder relative to the library folder
//!   (`path` stays the prototype's absolute path under [`prototype::HOME`]; a benchmark that
//!   creates the library on disk puts the location under its own folder).
//!
//! The file is
//!
//! ```text
//! { "preset": {…sizes}, "assignments": N,
//!   "locations": [LocationDTO + relativeFolder, …],
//!   "tags": [TagDTO + copyImpliedTags, …],          parents before their children
//!   "rootTags": [id, …],                            the tags without a parent, in order
//!   "files": [FileDTO, …] }                         with their final tags
//! ```
//!
//! written record by record, so a dump of W never holds more than one record in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use crate::prototype;
use crate::workload::{LOCATIONS_SPEC, RAW_DATE_ADDED, Workload};

/// What [`dump`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct DumpReport {
    /// The preset's name.
    pub preset: String,
    /// The file written.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Location records.
    pub locations: usize,
    /// Tag records.
    pub tags: usize,
    /// File records.
    pub files: usize,
    /// Tag ids in the files' `tags` arrays, summed.
    pub assignments: usize,
    /// Wall time of making and writing the records.
    pub ms: f64,
}

/// The `dateAdded` of file `i` in the dump: distinct for every file, one second apart, in the
/// order of the workload's file permutation (not the index order the files are created in), the
/// last one at [`RAW_DATE_ADDED`].
pub fn file_date_added(w: &Workload, i: usize) -> i64 {
    let files = w.preset().files as i64;
    // `permuted_file` is a bijection of 0..files: its value is the rank of file i.
    RAW_DATE_ADDED - (files - 1 - w.permuted_file(i) as i64) * 1000
}

/// The FileDTO of file `i` as the dump holds it: [`prototype::file_record`] with its own
/// [`file_date_added`].
pub fn file_dto(w: &Workload, i: usize) -> (String, Value) {
    let (id, mut record) = prototype::file_record(w, i);
    let added = file_date_added(w, i);
    record["dateAdded"] = added.into();
    record["dateLastIndexed"] = added.into();
    (id, record)
}

/// Writes the dump of `w` to `out` (its folder is created if needed).
pub fn dump(w: &Workload, out: &Path) -> Result<DumpReport> {
    let started = std::time::Instant::now();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut o = BufWriter::new(file);
    let p = w.preset();
    let children = prototype::tag_children(w);

    write!(o, "{{\"preset\":{},\"assignments\":{},\"locations\":[", serde_json::to_string(p)?, p.assignments())?;
    for (i, (_, folder)) in LOCATIONS_SPEC.iter().enumerate() {
        let (_, mut record) = prototype::location_record(w, i);
        record["relativeFolder"] = json!(folder);
        separator(&mut o, i)?;
        serde_json::to_writer(&mut o, &record)?;
    }
    o.write_all(b"],\"tags\":[")?;
    for j in 0..p.tags {
        let (_, mut record) = prototype::tag_record(w, j, &children);
        record["copyImpliedTags"] = false.into();
        separator(&mut o, j)?;
        serde_json::to_writer(&mut o, &record)?;
    }
    let roots: Vec<&str> = (0..p.tags).filter(|&j| w.tag(j).parent.is_none()).map(|j| w.tag_id(j)).collect();
    write!(o, "],\"rootTags\":{},\"files\":[", serde_json::to_string(&roots)?)?;
    let mut assignments = 0;
    for i in 0..p.files {
        let (_, record) = file_dto(w, i);
        assignments += record["tags"].as_array().map_or(0, Vec::len);
        separator(&mut o, i)?;
        o.write_all(b"\n")?;
        serde_json::to_writer(&mut o, &record)?;
    }
    o.write_all(b"]}\n")?;
    o.into_inner().map_err(|e| e.into_error()).context("writing the dump")?.sync_all()?;
    Ok(DumpReport {
        preset: p.name.clone(),
        path: out.display().to_string(),
        bytes: std::fs::metadata(out)?.len(),
        locations: LOCATIONS_SPEC.len(),
        tags: p.tags,
        files: p.files,
        assignments,
        ms: crate::measure::ms_since(started),
    })
}

fn separator(o: &mut impl Write, i: usize) -> Result<()> {
    if i > 0 {
        o.write_all(b",")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::workload::Preset;

    fn tiny() -> Workload {
        Workload::new(Preset { name: "custom".into(), files: 60, tags: 20, ..Preset::quick() })
    }

    #[test]
    fn the_dump_holds_the_workload_in_dto_shapes() {
        let w = tiny();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("w.json");
        let report = dump(&w, &path).unwrap();
        assert_eq!((report.locations, report.tags, report.files), (2, 20, 60));
        assert_eq!(report.assignments, w.preset().assignments());
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(v["preset"]["files"], 60);

        let locations = v["locations"].as_array().unwrap();
        assert_eq!(locations[1]["relativeFolder"], "Archive");
        assert_eq!(locations[1]["id"], w.location_id(1));

        // Tags: parents first, `subTags` naming children that exist, roots listed.
        let tags = v["tags"].as_array().unwrap();
        let mut seen = HashSet::new();
        let mut parent_of = HashMap::new();
        for t in tags {
            let id = t["id"].as_str().unwrap();
            assert!(!parent_of.contains_key(id) || seen.contains(parent_of[id]), "parent after child");
            seen.insert(id);
            for c in t["subTags"].as_array().unwrap() {
                parent_of.insert(c.as_str().unwrap(), id);
            }
            assert_eq!(t["copyImpliedTags"], false);
        }
        let roots: Vec<&str> = v["rootTags"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert_eq!(roots.len() + parent_of.len(), 20);
        assert!(roots.iter().all(|r| !parent_of.contains_key(r)));

        // Files: the prototype's records, each with its own dateAdded.
        let files = v["files"].as_array().unwrap();
        assert_eq!(files.len(), 60);
        let dates: HashSet<i64> = files.iter().map(|f| f["dateAdded"].as_i64().unwrap()).collect();
        assert_eq!(dates.len(), 60, "every file has its own dateAdded");
        assert_eq!(dates.iter().max(), Some(&RAW_DATE_ADDED));
        for (i, f) in files.iter().enumerate() {
            let (id, mut proto) = prototype::file_record(&w, i);
            assert_eq!(f["id"], id);
            proto["dateAdded"] = f["dateAdded"].clone();
            proto["dateLastIndexed"] = f["dateAdded"].clone();
            assert_eq!(f, &proto);
            assert!(f["tags"].as_array().unwrap().iter().all(|t| seen.contains(t.as_str().unwrap())));
        }
    }
}

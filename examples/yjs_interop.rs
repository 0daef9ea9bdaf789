//! The Rust half of `cargo xtask interop`: the yrs engine's segments for JavaScript Yjs, and
//! JavaScript Yjs's segments for the yrs engine. The xtask drives it; by hand:
//!
//! ```sh
//! cargo run -p onefolder-examples --example yjs_interop -- write DIR   # DIR/rust-to-js/
//! cargo run -p onefolder-examples --example yjs_interop -- read DIR    # DIR/js-to-rust/rust-read.json
//! ```
//!
//! **`write`** builds a library through the model (`onefolder_model::Library`) on a bare
//! [`YrsEngine`] and writes what a device would put on the shared medium: each edit's change
//! kept as the replica keeps it, three flushes merged into three delta segments exactly as a
//! flush merges them (`Engine::merge_changes`), then a snapshot segment (`Engine::snapshot`),
//! then one more delta made *after* the snapshot, for the concurrent case. Every file is a
//! complete segment (`onefolder_core::segment::encode`: the 84-byte header, then the payload,
//! which is the engine's lib0 v1 update bytes, uncompressed). `rust.json` holds, after each
//! segment, every record the engine reads (the normalised form below), the ids the scenario
//! uses and the ids the JavaScript side should give its own records.
//!
//! **`read`** takes the segments the JavaScript side wrote (`js-to-rust/js.json` lists them)
//! through the entry points a device uses: `segment::decode` then `Engine::apply_remote`, as
//! the replica ingests a peer's delta or snapshot segment, and `Engine::load_snapshot` on an
//! empty engine, as a device loads a snapshot. It writes the records read after each one, the
//! model's view of the result (tags, files, locations, searches), and the records of the
//! concurrent merge: this device's state after its own concurrent edit (`state.bin`) with
//! every JavaScript segment applied.
//!
//! Normalised records: `{collection: {id: {field: value}}}` for the collections
//! [`COLLECTIONS`], where a value is `null`, `true` / `false`, a JSON string, `{"int": "<decimal>"}`,
//! `{"float": "<16 hex digits of the IEEE-754 bits>"}`, `{"bytes": "<hex>"}` or
//! `{"set": [members in UTF-8 byte order]}`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result, bail, ensure};
use onefolder_core::names::{delta_name, snapshot_name};
use onefolder_core::segment::{self, DEFAULT_MAX_PAYLOAD, Expect, SegmentKind};
use onefolder_core::{DeviceId, Document, Engine, Group, LibraryId, Op, Value, group_on_engine};
use onefolder_engine_yrs::{ENGINE_ID, YrsEngine};
use onefolder_model::{FILES, FileMeta, LOCATIONS, Library, SEARCHES, TAGS};
use serde_json::{Map, Value as Json, json};

/// A collection outside the model holding one record per side with every kind of [`Value`].
const VALUES: &str = "interop";
/// The collections compared.
const COLLECTIONS: [&str; 5] = [FILES, TAGS, LOCATIONS, SEARCHES, VALUES];
/// The clock of the model's advisory dates (2026-01-01T00:00:00Z), so runs differ only by ids.
const NOW: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;

/// What a device keeps between flushes.
struct State {
    engine: Box<dyn Engine>,
    /// Each acknowledged edit's change, as the store's log holds them until a flush.
    unflushed: Vec<Vec<u8>>,
    next_seq: u64,
}

/// A bare yrs engine as the model's [`Document`], keeping every edit's change and flushing
/// them into segments as a `Replica` does (without a store or a transport).
struct Device {
    state: Mutex<State>,
    library: LibraryId,
    device: DeviceId,
}

impl Device {
    fn new(library: LibraryId) -> Self {
        let state = State { engine: Box::new(YrsEngine::new()), unflushed: Vec::new(), next_seq: 1 };
        Self { state: Mutex::new(state), library, device: DeviceId::random() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The unflushed changes merged into one delta segment: (file name, segment bytes).
    fn flush(&self) -> Result<(String, Vec<u8>)> {
        let mut st = self.lock();
        let payload = match st.unflushed.as_slice() {
            [] => bail!("nothing to flush"),
            [one] => one.clone(),
            many => {
                let parts: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
                st.engine.merge_changes(&parts)?
            }
        };
        st.unflushed.clear();
        let seq = st.next_seq;
        st.next_seq += 1;
        let bytes = segment::encode(SegmentKind::Delta, ENGINE_ID, self.library, self.device, seq, seq, &payload)?;
        Ok((delta_name(seq), bytes))
    }

    /// The whole document as a snapshot segment covering every seq so far.
    fn snapshot(&self) -> Result<(String, Vec<u8>)> {
        let mut st = self.lock();
        ensure!(st.unflushed.is_empty(), "flush before the snapshot");
        let seq = st.next_seq;
        st.next_seq += 1;
        let payload = st.engine.snapshot()?;
        let bytes = segment::encode(SegmentKind::Snapshot, ENGINE_ID, self.library, self.device, 1, seq, &payload)?;
        Ok((snapshot_name(seq), bytes))
    }
}

impl Document for Device {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        f(self.lock().engine.as_ref())
    }

    fn write(&self, ops: &[Op]) -> onefolder_core::Result<()> {
        let mut st = self.lock();
        st.engine.write(ops)?;
        if let Some(change) = st.engine.take_local_changes()? {
            st.unflushed.push(change);
        }
        Ok(())
    }

    fn group<R, E: From<onefolder_core::Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E> {
        let mut guard = self.lock();
        let st = &mut *guard;
        group_on_engine(&mut st.engine, f, |change| st.unflushed.push(change))
    }

    fn now_ms(&self) -> i64 {
        NOW
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One value in the normalised form (see the module docs).
fn normalise(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!({ "int": i.to_string() }),
        Value::Float(f) => json!({ "float": format!("{:016x}", f.to_bits()) }),
        Value::Str(s) => json!(s),
        Value::Bytes(b) => json!({ "bytes": hex(b) }),
        Value::Set(members) => json!({ "set": members }),
    }
}

/// Every record of [`COLLECTIONS`], normalised.
fn records(engine: &dyn Engine) -> Result<Json> {
    let mut out = Map::new();
    for collection in COLLECTIONS {
        let mut records = Map::new();
        for (id, record) in engine.collection(collection)? {
            let fields: Map<String, Json> = record.iter().map(|(field, v)| (field.clone(), normalise(v))).collect();
            records.insert(id, Json::Object(fields));
        }
        out.insert(collection.to_owned(), Json::Object(records));
    }
    Ok(Json::Object(out))
}

/// A record in [`VALUES`] holding every kind of value, including the codec's edge cases.
fn value_ops(id: &str) -> Vec<Op> {
    let mut ops = vec![Op::create(VALUES, id)];
    let scalars: [(&str, Value); 23] = [
        ("null", Value::Null),
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("int", Value::Int(42)),
        ("negative", Value::Int(-7)),
        ("int31", Value::Int(1 << 30)),
        ("millis", Value::Int(NOW)),
        ("maxSafe", Value::Int((1 << 53) - 1)),
        ("beyondSafe", Value::Int((1 << 53) + 1)),
        ("i64Min", Value::Int(i64::MIN)),
        ("i64Max", Value::Int(i64::MAX)),
        ("half", Value::Float(1.5)),
        ("integralFloat", Value::Float(3.0)),
        ("negativeZero", Value::Float(-0.0)),
        ("tiny", Value::Float(5e-324)),
        ("huge", Value::Float(1e300)),
        ("infinity", Value::Float(f64::INFINITY)),
        ("minusInfinity", Value::Float(f64::NEG_INFINITY)),
        ("text", Value::Str("plain".into())),
        ("unicode", Value::Str("Ünïcödé ✓ 🐈 \u{0} end".into())),
        ("empty", Value::Str(String::new())),
        ("bytes", Value::Bytes(vec![0, 1, 127, 128, 254, 255])),
        ("noBytes", Value::Bytes(Vec::new())),
    ];
    ops.extend(scalars.into_iter().map(|(field, value)| Op::put(VALUES, id, field, value)));
    for member in ["a", "b", "c/with/slashes", "ü", ""] {
        ops.push(Op::set_add(VALUES, id, "set", member));
    }
    ops
}

fn meta(size: i64, fingerprint: Option<&str>, indexed: Option<i64>) -> FileMeta {
    FileMeta {
        size,
        date_modified: NOW - DAY,
        date_created: NOW - 2 * DAY,
        fingerprint: fingerprint.map(str::to_owned),
        width: fingerprint.map(|_| 4032),
        height: fingerprint.map(|_| 3024),
        date_last_indexed: indexed,
    }
}

fn save(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_json(path: &Path, value: &Json) -> Result<()> {
    save(path, serde_json::to_string_pretty(value)?.as_bytes())
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `write DIR`: the library's segments and what the engine reads after each.
fn write(dir: &Path) -> Result<()> {
    let out = dir.join("rust-to-js");
    std::fs::create_dir_all(&out)?;
    let library = LibraryId::random();
    let lib = Library::new(Device::new(library));
    let mut deltas = Vec::new();
    let flushed = |lib: &Library<Device>| -> Result<Json> {
        let (name, bytes) = lib.doc().flush()?;
        save(&out.join(&name), &bytes)?;
        Ok(json!({ "file": name, "records": lib.doc().read(records)? }))
    };

    // 1. New records of every kind.
    let pictures = lib.add_location("Pictures", Some(""))?;
    let phone = lib.add_location("Phone", None)?;
    lib.set_exclusion(&pictures, "tmp", true)?;
    let animals = lib.create_tag(None, "Animals", None)?;
    let cats = lib.create_tag(Some(&animals), "Cats", Some("orange"))?;
    let places = lib.create_tag(None, "Places", None)?;
    let beach_tag = lib.create_tag(Some(&places), "Beach", Some("#00aaff"))?;
    let tom = lib.upsert_file(&pictures, "2026/tom.jpg", &meta(2_345_678, Some("2345678:ab12"), None))?;
    let beach = lib.upsert_file(&pictures, "2026/beach.png", &meta(987_654, Some("987654:cd34"), None))?;
    let rex = lib.upsert_file(&pictures, "2026/rex.jpg", &meta(1_111, Some("1111:ef56"), Some(NOW - 3_600_000)))?;
    let odd = lib.upsert_file(&pictures, "notes/Ünïcödé ✓ 🐈.jpg", &meta(0, None, None))?;
    lib.assign(&tom, &cats)?;
    lib.assign(&beach, &beach_tag)?;
    lib.assign(&beach, &animals)?;
    lib.assign(&rex, &animals)?;
    lib.assign(&odd, &cats)?;
    let cats_search = lib.save_search(
        "Cats of 2026",
        &json!([{ "key": "tags", "operator": "containsRecursively", "value": [cats] }]),
        false,
    )?;
    lib.save_search("Beaches", &json!([{ "key": "tags", "operator": "contains", "value": [beach_tag] }]), true)?;
    deltas.push(flushed(&lib)?);

    // 2. Field overwrites, a set member removed, and every kind of value.
    lib.rename_tag(&cats, "Kitties")?;
    lib.set_tag_color(&beach_tag, Some("blue"))?;
    lib.set_tag_hidden(&places, true)?;
    lib.set_annotations(&tom, Some("on the sofa"))?;
    lib.unassign(&beach, &animals)?;
    lib.upsert_file(&pictures, "2026/tom.jpg", &meta(2_400_000, Some("2400000:ab99"), None))?;
    lib.doc().write(&value_ops("rust"))?;
    deltas.push(flushed(&lib)?);

    // 3. Deletions and cleared fields.
    lib.delete_search(&cats_search)?;
    lib.remove_file(&odd)?;
    lib.set_tag_color(&cats, None)?;
    lib.doc().write(&[Op::set_remove(VALUES, "rust", "set", "b"), Op::clear(VALUES, "rust", "empty")])?;
    deltas.push(flushed(&lib)?);

    let (name, bytes) = lib.doc().snapshot()?;
    save(&out.join(&name), &bytes)?;
    let snapshot = json!({ "file": name, "records": lib.doc().read(records)? });

    // 4. Edits the JavaScript side does not see before it makes its own: a field both write,
    // fields only one writes, a set member removed here and added there, a record deleted here
    // and edited there, and the same tag created on both sides.
    lib.rename_tag(&animals, "Fauna")?;
    lib.set_tag_hidden(&animals, true)?;
    lib.unassign(&tom, &cats)?;
    lib.remove_file(&beach)?;
    let birds = lib.create_tag(Some(&animals), "Birds", Some("red"))?;
    let concurrent = flushed(&lib)?;
    save(&out.join("state.bin"), &lib.doc().read(|e| e.snapshot())?)?;

    // Ids the JavaScript side gives its records: the ones the model would compute.
    let camera = onefolder_model::ids::library_location_id("DCIM")?;
    let vehicles = onefolder_model::ids::tag_id(None, "Vehicles");
    let js_ids = json!({
        "location": camera,
        "car": onefolder_model::ids::file_id(&camera, "2026/car.jpg")?,
        "train": onefolder_model::ids::file_id(&camera, "2026/train.jpg")?,
        "vehicles": vehicles,
        "cars": onefolder_model::ids::tag_id(Some(&vehicles), "Cars"),
        "trains": onefolder_model::ids::tag_id(Some(&vehicles), "Trains"),
        "search": onefolder_model::ids::random_id(),
    });
    write_json(
        &out.join("rust.json"),
        &json!({
            "library": library.to_string(),
            "engine": ENGINE_ID,
            "collections": COLLECTIONS,
            "deltas": deltas,
            "snapshot": snapshot,
            "concurrent": {
                "file": concurrent["file"],
                "tag": animals,
                "rust": { "name": "Fauna", "isHidden": true },
                "file_id": tom,
                "member": cats,
                "deleted": beach,
                "created": birds,
                "created_parent": animals,
            },
            "ids": {
                "pictures": pictures, "phone": phone, "animals": animals, "cats": cats, "places": places,
                "beach_tag": beach_tag, "tom": tom, "beach": beach, "rex": rex,
            },
            "js_ids": js_ids,
        }),
    )?;
    eprintln!("yjs_interop: wrote {} delta segments, a snapshot and a concurrent delta to {}", 3, out.display());
    Ok(())
}

/// The payload of a segment file the JavaScript side wrote, checked as the replica checks a
/// peer's segment.
fn payload(path: &Path, library: LibraryId, kind: SegmentKind) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let expect = Expect { library, engine: ENGINE_ID, max_payload: DEFAULT_MAX_PAYLOAD };
    let seg = segment::decode(&bytes, &expect).with_context(|| format!("decoding the segment {}", path.display()))?;
    ensure!(seg.header.kind == kind, "{}: a {:?} segment, expected {kind:?}", path.display(), seg.header.kind);
    Ok(seg.payload.to_vec())
}

fn apply(engine: &mut YrsEngine, path: &Path, library: LibraryId, kind: SegmentKind) -> Result<()> {
    let bytes = payload(path, library, kind)?;
    engine.apply_remote(&bytes).with_context(|| format!("applying {}", path.display()))?;
    ensure!(!engine.has_pending(), "{}: the engine waits for missing dependencies after it", path.display());
    Ok(())
}

fn file_name(entry: &Json) -> Result<&str> {
    entry["file"].as_str().context("a segment entry without a file name")
}

/// `read DIR`: the JavaScript side's segments through the engine.
fn read(dir: &Path) -> Result<()> {
    let r2j = dir.join("rust-to-js");
    let j2r = dir.join("js-to-rust");
    let rust = read_json(&r2j.join("rust.json"))?;
    let js = read_json(&j2r.join("js.json"))?;
    let library: LibraryId = rust["library"].as_str().context("rust.json has no library id")?.parse()?;
    let base = r2j.join(file_name(&rust["snapshot"])?);
    let js_deltas = js["deltas"].as_array().context("js.json has no deltas")?;

    // A peer that applied this device's snapshot ingests the JavaScript deltas one by one.
    let mut engine = YrsEngine::new();
    apply(&mut engine, &base, library, SegmentKind::Snapshot)?;
    let mut deltas = Vec::new();
    for entry in js_deltas {
        let name = file_name(entry)?;
        apply(&mut engine, &j2r.join(name), library, SegmentKind::Delta)?;
        deltas.push(json!({ "file": name, "records": records(&engine)? }));
    }

    // The JavaScript snapshot: ingested as a peer's snapshot segment, and loaded.
    let snapshot_name = file_name(&js["snapshot"])?;
    let snapshot_path = j2r.join(snapshot_name);
    let mut ingested = YrsEngine::new();
    apply(&mut ingested, &snapshot_path, library, SegmentKind::Snapshot)?;
    let mut loaded = YrsEngine::new();
    loaded.load_snapshot(&payload(&snapshot_path, library, SegmentKind::Snapshot)?)?;

    // This device after its concurrent edit, reopened, then every JavaScript segment.
    let mut merged = YrsEngine::new();
    merged.load_snapshot(&std::fs::read(r2j.join("state.bin"))?)?;
    let concurrent = file_name(&js["concurrent"])?;
    for name in js_deltas.iter().map(file_name).chain([Ok(concurrent)]) {
        apply(&mut merged, &j2r.join(name?), library, SegmentKind::Delta)?;
    }

    let merged_records = records(&merged)?;
    let snapshot = json!({
        "file": snapshot_name,
        "ingested": records(&ingested)?,
        "loaded": records(&loaded)?,
    });
    // The model's view of the state after the JavaScript deltas.
    let lib = Library::new(Mutex::new(Box::new(engine) as Box<dyn Engine>));
    let model = json!({
        "tags": serde_json::to_value(lib.tags()?)?,
        "files": serde_json::to_value(lib.files()?)?,
        "locations": serde_json::to_value(lib.locations()?)?,
        "searches": serde_json::to_value(lib.searches()?)?,
    });
    write_json(
        &j2r.join("rust-read.json"),
        &json!({
            "deltas": deltas,
            "snapshot": snapshot,
            "concurrent": { "file": concurrent, "merged": merged_records },
            "model": model,
        }),
    )?;
    eprintln!(
        "yjs_interop: read {} delta segments, a snapshot and a concurrent delta from {}",
        deltas.len(),
        j2r.display()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["write", dir] => write(Path::new(dir)),
        ["read", dir] => read(Path::new(dir)),
        _ => bail!("usage: yjs_interop write DIR | read DIR"),
    }
}

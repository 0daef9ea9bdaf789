#!/usr/bin/env node
// The JavaScript half of `cargo xtask interop`, on npm `yjs` (13.6.33, pinned by the lockfile).
// The xtask copies this folder elsewhere, runs `npm ci` there and drives both halves; by hand:
//
//   npm ci
//   node interop.js read DIR    # DIR/rust-to-js/*.seg (from `yjs_interop write`) -> DIR/js-read.json
//   node interop.js write DIR   # DIR/js-to-rust/*.seg and DIR/js-to-rust/js.json
//
// Segments are whole segment files of OneFolder Sync (crates/core/src/segment.rs): an 84-byte
// header — magic "OFSG", format version 1 (u16 LE), kind (0 delta, 1 snapshot), flags (0: no
// compression), engine id "yrs" NUL-padded to 16 bytes, library id and device id (16 bytes
// each), first and last seq (u64 LE), payload length and payload CRC-32 (u32 LE), then the
// CRC-32 of the header's first 80 bytes — followed by the payload: a Yjs v1 update
// (`Y.applyUpdate`, `Y.encodeStateAsUpdate`, `Y.mergeUpdates`), nothing around it.
//
// The document layout is the yrs engine's (adapters/engine-yrs/src/lib.rs): the root map
// `<collection>` holds `id -> true` for every existing record; the root map
// `<collection>/<id>` holds `field -> value` for a scalar field and `<field>/<member> -> true`
// for each member of a set field (split at the first '/'). Numbers follow the engine's codec
// (adapters/engine-yrs/src/codec.rs): an integral number is an integer, an integral float is
// stored as the array ["f64", x].
//
// Records are written out normalised, exactly as the Rust side writes them:
// {collection: {id: {field: value}}}, a value being null, a boolean, a string, {"int": "<decimal>"},
// {"float": "<16 hex digits of the IEEE-754 bits>"}, {"bytes": "<hex>"} or
// {"set": [members in UTF-8 byte order]}.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const Y = require('yjs');

const SEP = '/';
const LOCAL = 'js-local';
const REMOTE = 'remote';
const ENGINE = 'yrs';
const HEADER_LEN = 84;
const DELTA = 0;
const SNAPSHOT = 1;
const NOW = 1767225600000; // 2026-01-01T00:00:00Z, the Rust side's clock too
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

// ---------------------------------------------------------------- segments

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE), as crc32fast computes it. */
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function uuidBytes(uuid) {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new Error(`not a UUID: ${uuid}`);
  return Buffer.from(hex, 'hex');
}

/** The payload of a segment file, after every check the Rust decoder makes. */
function readSegment(file, library, kind) {
  const b = fs.readFileSync(file);
  const fail = (why) => {
    throw new Error(`${file}: ${why}`);
  };
  if (b.length < HEADER_LEN) fail(`truncated: ${b.length} bytes`);
  if (b.toString('latin1', 0, 4) !== 'OFSG') fail('bad magic');
  if (b.readUInt16LE(4) !== 1) fail(`segment format version ${b.readUInt16LE(4)}`);
  if (crc32(b.subarray(0, 80)) !== b.readUInt32LE(80)) fail('header checksum mismatch');
  if (b[6] !== kind) fail(`kind ${b[6]}, expected ${kind}`);
  if (b[7] !== 0) fail(`flags ${b[7]} (compression is not defined)`);
  const engine = b.subarray(8, 24);
  const len = engine.indexOf(0) < 0 ? 16 : engine.indexOf(0);
  if (engine.toString('latin1', 0, len) !== ENGINE || engine.subarray(len).some((x) => x !== 0)) {
    fail(`engine ${JSON.stringify(engine.toString('latin1', 0, len))}`);
  }
  if (!b.subarray(24, 40).equals(uuidBytes(library))) fail('segment of another library');
  if (b.readBigUInt64LE(56) > b.readBigUInt64LE(64)) fail('seq range reversed');
  const payloadLen = b.readUInt32LE(72);
  if (b.length !== HEADER_LEN + payloadLen) fail(`${b.length} bytes, the header says ${HEADER_LEN + payloadLen}`);
  const payload = b.subarray(HEADER_LEN);
  if (crc32(payload) !== b.readUInt32LE(76)) fail('payload checksum mismatch');
  return new Uint8Array(payload);
}

/** A segment file's bytes, laid out as `onefolder_core::segment::encode` lays them out. */
function encodeSegment(kind, library, device, seqStart, seqEnd, payload) {
  const h = Buffer.alloc(HEADER_LEN);
  h.write('OFSG', 0, 'latin1');
  h.writeUInt16LE(1, 4);
  h[6] = kind;
  h[7] = 0;
  h.write(ENGINE, 8, 'latin1');
  uuidBytes(library).copy(h, 24);
  device.copy(h, 40);
  h.writeBigUInt64LE(BigInt(seqStart), 56);
  h.writeBigUInt64LE(BigInt(seqEnd), 64);
  h.writeUInt32LE(payload.length, 72);
  h.writeUInt32LE(crc32(payload), 76);
  h.writeUInt32LE(crc32(h.subarray(0, 80)), 80);
  return Buffer.concat([h, Buffer.from(payload)]);
}

function deltaName(seq) {
  return `${String(seq).padStart(20, '0')}.seg`;
}

function snapshotName(seq) {
  return `snap-${String(seq).padStart(20, '0')}.seg`;
}

/** Applies a segment's payload and checks that nothing waits for a missing dependency. */
function applySegment(doc, file, library, kind) {
  Y.applyUpdate(doc, readSegment(file, library, kind), REMOTE);
  if (doc.store.pendingStructs || doc.store.pendingDs) {
    throw new Error(`${file}: Yjs waits for missing dependencies after it`);
  }
}

// ---------------------------------------------------------------- reading the layout

function floatBits(x) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return view.getBigUint64(0).toString(16).padStart(16, '0');
}

function hex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

/** Strings in UTF-8 byte order (Rust's `String` order), not JavaScript's UTF-16 order. */
function byteOrder(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A record-map entry as the engine's codec reads it; `undefined` for what it skips. */
function scalar(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return { int: v.toString() };
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= -(2 ** 63) && v <= 2 ** 63) {
      // 2^63 is how yrs writes i64::MAX; the codec reads it saturated.
      const i = BigInt(v) > I64_MAX ? I64_MAX : BigInt(v);
      return { int: i.toString() };
    }
    return { float: floatBits(v) };
  }
  if (v instanceof Uint8Array) return { bytes: hex(v) };
  if (Array.isArray(v) && v.length === 2 && v[0] === 'f64') {
    if (typeof v[1] === 'number') return { float: floatBits(v[1]) };
    if (typeof v[1] === 'bigint') return { float: floatBits(Number(v[1])) };
  }
  return undefined; // a nested type, a map, another array: no OneFolder writer stores it
}

/** One record map, materialised as the engine materialises it. */
function readRecord(doc, collection, id) {
  const record = {};
  const sets = new Map();
  for (const [key, value] of doc.getMap(`${collection}${SEP}${id}`).entries()) {
    const at = key.indexOf(SEP);
    if (at >= 0) {
      const field = key.slice(0, at);
      if (!sets.has(field)) sets.set(field, []);
      sets.get(field).push(key.slice(at + 1));
      continue;
    }
    if (value instanceof Y.AbstractType) continue;
    const v = scalar(value);
    if (v !== undefined) record[key] = v;
  }
  // A scalar hides set members of the same field name.
  for (const [field, members] of sets) {
    if (!(field in record)) record[field] = { set: members.sort(byteOrder) };
  }
  return sortKeys(record);
}

function sortKeys(object) {
  return Object.fromEntries(Object.keys(object).sort(byteOrder).map((k) => [k, object[k]]));
}

/** Every existing record of `collections`, normalised. */
function records(doc, collections) {
  const out = {};
  for (const collection of collections) {
    const ids = [...doc.getMap(collection).keys()].sort(byteOrder);
    out[collection] = Object.fromEntries(ids.map((id) => [id, readRecord(doc, collection, id)]));
  }
  return out;
}

// ---------------------------------------------------------------- writing the layout

/** The engine's operations (`onefolder_core::Op`) on a Yjs document, one transaction per call. */
class Writer {
  constructor(doc) {
    this.doc = doc;
  }

  index(c) {
    return this.doc.getMap(c);
  }

  rec(c, id) {
    return this.doc.getMap(`${c}${SEP}${id}`);
  }

  edit(f) {
    this.doc.transact(() => f(this), LOCAL);
  }

  create(c, id) {
    if (!this.index(c).has(id)) this.index(c).set(id, true);
  }

  delete(c, id) {
    this.index(c).delete(id);
    const r = this.rec(c, id);
    for (const key of [...r.keys()]) r.delete(key);
  }

  clearMembers(r, field) {
    for (const key of [...r.keys()]) {
      const at = key.indexOf(SEP);
      if (at >= 0 && key.slice(0, at) === field) r.delete(key);
    }
  }

  /** A scalar: use `Writer.float(x)` for a float whose value may be integral. */
  put(c, id, field, value) {
    const r = this.rec(c, id);
    this.clearMembers(r, field);
    if (r.has(field) && JSON.stringify(scalar(r.get(field))) === JSON.stringify(scalar(value))) return;
    r.set(field, value);
  }

  clear(c, id, field) {
    const r = this.rec(c, id);
    this.clearMembers(r, field);
    r.delete(field);
  }

  setAdd(c, id, field, member) {
    const r = this.rec(c, id);
    if (r.has(field)) r.delete(field);
    // Always a new entry: a concurrent removal deletes only the entry it saw.
    r.set(`${field}${SEP}${member}`, true);
  }

  setRemove(c, id, field, member) {
    this.rec(c, id).delete(`${field}${SEP}${member}`);
  }

  static float(x) {
    return Number.isInteger(x) ? ['f64', x] : x;
  }
}

// The model's file facts (crates/model/src/layout.rs `Meta`): a version byte, then postcard.
function varint(out, n) {
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
}

function zigzag(out, v) {
  const n = BigInt(v);
  varint(out, n >= 0n ? n << 1n : ((-n) << 1n) - 1n);
}

function str(out, s) {
  const b = Buffer.from(s, 'utf8');
  varint(out, BigInt(b.length));
  out.push(...b);
}

function option(out, v, write) {
  if (v === null || v === undefined) {
    out.push(0);
  } else {
    out.push(1);
    write(out, v);
  }
}

function fileMeta(m) {
  const out = [m.dateLastIndexed === undefined ? 1 : 2];
  str(out, m.location);
  str(out, m.path);
  for (const n of [m.size, m.dateAdded, m.dateModified, m.dateCreated]) zigzag(out, n);
  option(out, m.fingerprint, str);
  option(out, m.width, zigzag);
  option(out, m.height, zigzag);
  if (m.dateLastIndexed !== undefined) zigzag(out, m.dateLastIndexed);
  return new Uint8Array(out);
}

// ---------------------------------------------------------------- the two commands

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function writeJson(file, value) {
  fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** `read DIR`: the Rust side's segments, one by one into one document, and its snapshot alone. */
function read(dir) {
  const r2j = path.join(dir, 'rust-to-js');
  const rust = readJson(path.join(r2j, 'rust.json'));
  const doc = new Y.Doc();
  const deltas = rust.deltas.map(({ file }) => {
    applySegment(doc, path.join(r2j, file), rust.library, DELTA);
    return { file, records: records(doc, rust.collections) };
  });
  const fresh = new Y.Doc();
  applySegment(fresh, path.join(r2j, rust.snapshot.file), rust.library, SNAPSHOT);
  const snapshot = { file: rust.snapshot.file, records: records(fresh, rust.collections) };
  writeJson(path.join(dir, 'js-read.json'), { yjs: require('yjs/package.json').version, deltas, snapshot });
}

function check(ok, what) {
  if (!ok) throw new Error(`after the concurrent merge on the JavaScript side: ${what}`);
}

/**
 * `write DIR`: on top of the Rust side's snapshot, two flushes of edits (new records of every
 * kind; overwrites, set changes and deletions of records of both sides), a snapshot, then an
 * edit concurrent with the Rust side's last delta, merged with it here.
 */
function write(dir) {
  const r2j = path.join(dir, 'rust-to-js');
  const j2r = path.join(dir, 'js-to-rust');
  fs.mkdirSync(j2r, { recursive: true });
  const rust = readJson(path.join(r2j, 'rust.json'));
  const { library, collections, ids, js_ids: js } = rust;
  const device = crypto.randomBytes(16);

  const doc = new Y.Doc();
  applySegment(doc, path.join(r2j, rust.snapshot.file), library, SNAPSHOT);
  const unflushed = [];
  doc.on('update', (update, origin) => {
    if (origin === LOCAL) unflushed.push(update);
  });
  let seq = 1;
  const flush = () => {
    if (unflushed.length === 0) throw new Error('nothing to flush');
    const payload = unflushed.length === 1 ? unflushed[0] : Y.mergeUpdates(unflushed);
    unflushed.length = 0;
    const file = deltaName(seq);
    fs.writeFileSync(path.join(j2r, file), encodeSegment(DELTA, library, device, seq, seq, payload));
    seq += 1;
    return { file, records: records(doc, collections) };
  };
  const w = new Writer(doc);
  const deltas = [];

  // 1. New records of every kind, with the ids the model would give them.
  const criteria = JSON.stringify([{ key: 'tags', operator: 'contains', value: [js.vehicles] }]);
  w.edit((w) => {
    w.create('locations', js.location);
    w.put('locations', js.location, 'name', 'Camera');
    w.put('locations', js.location, 'dateAdded', NOW);
    w.put('locations', js.location, 'relPath', 'DCIM');
    w.setAdd('locations', js.location, 'exclusions', '.thumbnails');
    const tag = (id, name, parent, order, color) => {
      w.create('tags', id);
      w.put('tags', id, 'name', name);
      w.put('tags', id, 'parent', parent);
      w.put('tags', id, 'order', order);
      w.put('tags', id, 'dateAdded', NOW);
      if (color) w.put('tags', id, 'color', color);
    };
    tag(js.vehicles, 'Vehicles', null, '8280', null);
    tag(js.cars, 'Cars', js.vehicles, '80', '#c0ffee');
    tag(js.trains, 'Trains', js.vehicles, '8180', null);
    const file = (id, rel, size, tags, extra) => {
      w.create('files', id);
      const facts = { location: js.location, path: rel, size, dateAdded: NOW, dateModified: NOW - 5000 };
      w.put('files', id, 'm', fileMeta({ ...facts, dateCreated: NOW - 9000, ...extra }));
      for (const t of tags) w.setAdd('files', id, 't', t);
    };
    file(js.car, '2026/car.jpg', 4096, [js.cars], { fingerprint: '4096:77aa', width: 640, height: 480 });
    w.put('files', js.car, 'annotations', 'red one');
    file(js.train, '2026/train.jpg', 8192, [js.trains, ids.cats], { dateLastIndexed: NOW - 1000 });
    w.create('searches', js.search);
    w.put('searches', js.search, 'name', 'Vehicles');
    w.put('searches', js.search, 'criteria', criteria);
    w.put('searches', js.search, 'matchAny', true);
    const v = (field, value) => w.put('interop', 'js', field, value);
    w.create('interop', 'js');
    v('null', null);
    v('true', true);
    v('false', false);
    v('int', 42);
    v('negative', -7);
    v('int31', 2 ** 30);
    v('millis', NOW);
    v('maxSafe', Number.MAX_SAFE_INTEGER);
    v('beyondSafe', 2n ** 53n + 1n);
    v('i64Min', I64_MIN);
    v('i64Max', I64_MAX);
    v('half', 1.5);
    v('integralFloat', Writer.float(3));
    v('tiny', 5e-324);
    v('huge', 1e300);
    v('infinity', Infinity);
    v('minusInfinity', -Infinity);
    v('text', 'plain');
    v('unicode', 'Ünïcödé ✓ 🐈 \u0000 end');
    v('empty', '');
    v('bytes', new Uint8Array([0, 1, 127, 128, 254, 255]));
    v('noBytes', new Uint8Array(0));
    for (const m of ['a', 'b', 'c/with/slashes', 'ü', '']) w.setAdd('interop', 'js', 'set', m);
  });
  deltas.push(flush());

  // 2. Overwrites, set changes and deletions, of the Rust side's records and of its own.
  w.edit((w) => {
    w.put('tags', ids.places, 'name', 'Travel');
    w.put('tags', js.cars, 'color', '#00ff00');
    w.setAdd('files', ids.rex, 't', js.vehicles);
    w.setRemove('files', ids.rex, 't', ids.animals);
    w.clear('files', js.car, 'annotations');
    w.delete('files', js.train);
    w.delete('locations', ids.phone);
    w.put('interop', 'rust', 'text', 'edited by Yjs');
    w.put('interop', 'rust', 'half', 2.25);
    // Yjs holds the Rust side's ["f64", -0.0] as the number -0, which lib0 encodes as a var-int
    // that yrs reads as the integer 0: re-encoded here it would come back as +0.0 (a known
    // limitation, adapters/engine-yrs/src/codec.rs). Cleared before this side's snapshot.
    w.clear('interop', 'rust', 'negativeZero');
    w.setRemove('interop', 'js', 'set', 'a');
  });
  deltas.push(flush());

  const snapshotFile = snapshotName(seq);
  const state = Y.encodeStateAsUpdate(doc);
  fs.writeFileSync(path.join(j2r, snapshotFile), encodeSegment(SNAPSHOT, library, device, 1, seq, state));
  seq += 1;
  const snapshot = { file: snapshotFile, records: records(doc, collections) };

  // 3. Concurrent with the Rust side's last delta.
  const c = rust.concurrent;
  const jsEdit = { name: 'Animalia', color: 'teal' };
  w.edit((w) => {
    w.put('tags', c.tag, 'name', jsEdit.name);
    w.put('tags', c.tag, 'color', jsEdit.color);
    w.setAdd('files', c.file_id, 't', c.member);
    w.put('files', c.deleted, 'annotations', 'edited while deleted elsewhere');
    w.create('tags', c.created);
    w.put('tags', c.created, 'name', 'Birds');
    w.put('tags', c.created, 'parent', c.created_parent);
    w.put('tags', c.created, 'order', '80');
    w.put('tags', c.created, 'dateAdded', NOW);
    w.put('tags', c.created, 'color', 'crimson');
  });
  const concurrent = flush();
  applySegment(doc, path.join(r2j, c.file), library, DELTA);
  const merged = records(doc, collections);
  const tag = merged.tags[c.tag];
  check(tag, `tag ${c.tag} is gone`);
  check(tag.color === jsEdit.color, `tag ${c.tag} lost this side's colour: ${JSON.stringify(tag)}`);
  check(tag.isHidden === c.rust.isHidden, `tag ${c.tag} lost the Rust side's isHidden: ${JSON.stringify(tag)}`);
  check([jsEdit.name, c.rust.name].includes(tag.name), `tag ${c.tag} is named ${JSON.stringify(tag.name)}`);
  check(merged.files[c.file_id]?.t?.set?.includes(c.member), `the re-added member ${c.member} lost to the removal`);
  check(!(c.deleted in merged.files), `file ${c.deleted}, deleted there and edited here, exists`);
  const birds = merged.tags[c.created];
  check(birds && birds.name === 'Birds', `tag ${c.created}, created on both sides, is ${JSON.stringify(birds)}`);
  check(['red', 'crimson'].includes(birds.color), `tag ${c.created} has colour ${JSON.stringify(birds.color)}`);

  // What the Rust model must read from these records after the two deltas (null: absent).
  const model = {
    tags: {
      [js.vehicles]: { name: 'Vehicles', parent: null, color: null },
      [js.cars]: { name: 'Cars', parent: js.vehicles, color: '#00ff00' },
      [js.trains]: { name: 'Trains', parent: js.vehicles, color: null },
      [ids.places]: { name: 'Travel' },
    },
    files: {
      [js.car]: {
        location: js.location,
        path: '2026/car.jpg',
        name: 'car.jpg',
        extension: 'jpg',
        size: 4096,
        width: 640,
        height: 480,
        fingerprint: '4096:77aa',
        date_added: NOW,
        date_modified: NOW - 5000,
        date_created: NOW - 9000,
        annotations: null,
        tags: [js.cars],
      },
      [js.train]: null,
      [ids.rex]: { tags: [js.vehicles] },
    },
    locations: {
      [js.location]: { name: 'Camera', rel_path: 'DCIM', date_added: NOW, exclusions: ['.thumbnails'] },
      [ids.phone]: null,
    },
    searches: { [js.search]: { name: 'Vehicles', criteria, match_any: true } },
  };
  writeJson(path.join(j2r, 'js.json'), {
    yjs: require('yjs/package.json').version,
    deltas,
    snapshot,
    concurrent: { file: concurrent.file, merged },
    model,
  });
}

function main() {
  const [command, dir] = process.argv.slice(2);
  if (command === 'read' && dir) return read(path.resolve(dir));
  if (command === 'write' && dir) return write(path.resolve(dir));
  throw new Error('usage: node interop.js read DIR | write DIR');
}

try {
  main();
} catch (e) {
  console.error(`interop.js: ${e.message}`);
  process.exit(1);
}

#!/usr/bin/env node
// Issue 16: `fetchFiles` of every file and `searchFiles` for one tag through the Node binding's
// `SyncBackend` (OneFolder's DataStorage on OneFolder Sync), against the prototype's in-memory
// equivalent on npm `yjs`, measured in the same run. A benchmark, not a test: nothing here fails
// on a time; it fails only when the two sides disagree on what they return.
//
//   node bench/data-storage.js [--preset quick|full] [--dump FILE | --bench-bin FILE]
//                              [--json OUT] [--addon FILE] [--engine yrs|automerge]
//                              [--store sqlite|lmdb] [--runs N] [--work-dir DIR] [--keep]
//
// The workload W (or its `quick` fraction) comes from `onefolder-bench dump` (crates/bench/src/
// dump.rs: OneFolder's DTOs, dates as ms, files with their final tags): read from `--dump`, or
// written by the bench binary (`--bench-bin`, else target/release or target/debug) into the
// working directory.
//
// Baseline, the prototype: one `Y.Doc` with the root maps `files`, `tags`, `locations` and
// `searches`, each record one whole plain object under its id (the DTO with dates as numbers),
// encoded with `Y.encodeStateAsUpdate` and loaded into a fresh document with `Y.applyUpdate`
// (timed once). Its `fetchFiles` and `searchFiles` are those of the prototype's Yjs backend:
// every value of `files` copied with its four dates made `Date`s, filtered (`searchFiles`: the
// `tags` array holds one of the criterion's ids), sorted ascending by the key, then reversed
// for a descending order.
//
// Ours: a library created in a temporary folder and filled through `SyncBackend` the way the
// app does (locations, tags parents first with `saveTag` placing the children, files with
// `createFilesFromPath`, then their tags with `saveFiles`; timed, not compared), closed, opened
// again (`Library.open` + `SyncBackend.init`: the cold open), then the same two calls.
//
// Each timed call: one warm-up (reported: ours builds its tag index there), then the median of
// N runs (5 for full, 10 for quick), the two sides alternating run by run so that both see the
// same machine load; `global.gc()` before each run when node has `--expose-gc` (the script
// restarts itself with it and a large heap). Both sides must return the same files in the same
// order (ids mapped by location and relative path) or the script exits with an error.
//
// Prints progress on stderr and one JSON line on stdout (times in ms), also written to `--json`.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const v8 = require('node:v8');
const { spawnSync } = require('node:child_process');
const { performance } = require('node:perf_hooks');

const HEAP_MB = 12288;
const CHUNK = 5000;

function usage(message) {
  if (message) console.error(`data-storage.js: ${message}`);
  console.error(
    'usage: node bench/data-storage.js [--preset quick|full] [--dump FILE | --bench-bin FILE] [--json OUT]\n' +
      '       [--addon FILE] [--engine yrs|automerge] [--store sqlite|lmdb] [--runs N] [--work-dir DIR] [--keep]',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = { preset: 'quick', engine: 'yrs', store: 'sqlite', keep: false };
  const takes = {
    '--preset': 'preset',
    '--dump': 'dump',
    '--bench-bin': 'benchBin',
    '--json': 'json',
    '--addon': 'addon',
    '--engine': 'engine',
    '--store': 'store',
    '--runs': 'runs',
    '--work-dir': 'workDir',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--keep') o.keep = true;
    else if (a === '--help' || a === '-h') usage();
    else if (takes[a]) {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      o[takes[a]] = argv[++i];
    } else usage(`unknown option ${JSON.stringify(a)}`);
  }
  if (!['quick', 'full'].includes(o.preset)) usage(`unknown preset ${JSON.stringify(o.preset)}`);
  o.runs = o.runs === undefined ? (o.preset === 'full' ? 5 : 10) : Number(o.runs);
  if (!Number.isInteger(o.runs) || o.runs < 1) usage('--runs needs a positive integer');
  return o;
}

// ------------------------------------------------------------------------------------------
// Set-up

/** Runs this script again with a heap large enough for W and `--expose-gc`, once. */
function relaunchIfNeeded() {
  const limitMb = v8.getHeapStatistics().heap_size_limit / 1024 / 1024;
  if (typeof global.gc === 'function' && limitMb >= HEAP_MB * 0.9) return;
  if (process.env.ONEFOLDER_BENCH_RELAUNCHED) return; // flags refused: run as we are
  const r = spawnSync(
    process.execPath,
    [`--max-old-space-size=${HEAP_MB}`, '--expose-gc', __filename, ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, ONEFOLDER_BENCH_RELAUNCHED: '1' } },
  );
  if (r.error) throw r.error;
  process.exit(r.status === null ? 1 : r.status);
}

const here = path.resolve(__dirname, '..');
const repo = path.resolve(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');
const started = performance.now();

function log(message) {
  console.error(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}`);
}

/** The native `Library` class: from `--addon` (a built cdylib) or the package's index.js. */
function loadLibrary(addon) {
  if (!addon) return require(path.join(here, 'index.js')).Library;
  const m = { exports: {} };
  process.dlopen(m, path.resolve(addon));
  if (!m.exports.Library) throw new Error(`${addon} exports no Library`);
  return m.exports.Library;
}

function loadDataStorage() {
  const file = path.join(here, 'dist', 'data-storage.js');
  if (!fs.existsSync(file)) {
    throw new Error(`${file} does not exist: run \`npm run build\` in ${here}`);
  }
  return require(file);
}

/** The dump: read from `--dump`, or written by `onefolder-bench dump` into `work`. */
function loadDump(o, work) {
  let file = o.dump;
  if (!file) {
    const candidates = [
      o.benchBin,
      process.env.ONEFOLDER_BENCH_BIN,
      path.join(targetDir, 'release', 'onefolder-bench'),
      path.join(targetDir, 'debug', 'onefolder-bench'),
    ].filter(Boolean);
    const bin = candidates.find((c) => fs.existsSync(c));
    if (!bin) throw new Error(`no onefolder-bench binary (tried ${candidates.join(', ')}): pass --dump or --bench-bin`);
    file = path.join(work, `workload-${o.preset}.json`);
    log(`writing the ${o.preset} workload with ${path.relative(process.cwd(), bin) || bin}`);
    const r = spawnSync(bin, ['dump', '--preset', o.preset, '--out', file], { encoding: 'utf8' });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`onefolder-bench dump failed (${r.status}): ${r.stderr.trim()}`);
  }
  const t = performance.now();
  const dump = JSON.parse(fs.readFileSync(file, 'utf8'));
  log(`read ${file}: ${dump.files.length} files, ${dump.tags.length} tags (${ms(t).toFixed(0)} ms)`);
  return dump;
}

function ms(since) {
  return performance.now() - since;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function round(x, digits = 3) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The tag of the search: the one carried by the most files (the first in the dump among equals). */
function searchTag(dump) {
  const counts = new Map();
  for (const f of dump.files) for (const t of f.tags) counts.set(t, (counts.get(t) || 0) + 1);
  let best = null;
  for (const t of dump.tags) {
    const n = counts.get(t.id) || 0;
    if (!best || n > best.files) best = { id: t.id, name: t.name, files: n };
  }
  return best;
}

// ------------------------------------------------------------------------------------------
// Baseline: the prototype's Yjs document and its backend's fetchFiles / searchFiles

const ROOTS = ['files', 'tags', 'locations', 'searches'];

/** W in the prototype's layout; returns its `Y.encodeStateAsUpdate`. */
function buildPrototype(Y, dump) {
  const doc = new Y.Doc();
  const maps = Object.fromEntries(ROOTS.map((r) => [r, doc.getMap(r)]));
  const put = (map, records) => {
    for (let i = 0; i < records.length; i += 1000) {
      doc.transact(() => {
        for (const r of records.slice(i, i + 1000)) map.set(r.id, r);
      });
    }
  };
  put(maps.locations, dump.locations.map(({ relativeFolder, ...l }) => l));
  put(maps.tags, dump.tags);
  put(maps.files, dump.files);
  const update = Y.encodeStateAsUpdate(doc);
  doc.destroy();
  return update;
}

function toDate(v) {
  return v instanceof Date ? v : new Date(v);
}

/** A stored file record as a FileDTO: a copy with its four dates made `Date`s. */
function fileDto(f) {
  return {
    ...f,
    dateAdded: toDate(f.dateAdded),
    dateModified: toDate(f.dateModified),
    dateLastIndexed: toDate(f.dateLastIndexed),
    dateCreated: toDate(f.dateCreated),
  };
}

function sortByKey(files, key, descending) {
  files.sort((a, b) => {
    const x = a[key];
    const y = b[key];
    return x < y ? -1 : x > y ? 1 : 0;
  });
  if (descending) files.reverse();
  return files;
}

function prototypeFetchFiles(files, key, descending) {
  return sortByKey(Array.from(files.values()).map(fileDto), key, descending);
}

/** `searchFiles` with one array criterion, operator `contains`: the files carrying one of its ids. */
function prototypeSearchFiles(files, criterion, key, descending) {
  const wanted = criterion.value;
  const found = Array.from(files.values())
    .map(fileDto)
    .filter((f) => f[criterion.key].some((t) => wanted.includes(t)));
  return sortByKey(found, key, descending);
}

// ------------------------------------------------------------------------------------------
// Ours: the library through SyncBackend

async function populate(backend, dump, folder, OrderDirection) {
  const times = {};
  let t = performance.now();
  for (const [index, l] of dump.locations.entries()) {
    const dir = path.join(folder, l.relativeFolder);
    fs.mkdirSync(dir, { recursive: true });
    await backend.createLocation({ id: l.id, path: dir, dateAdded: new Date(l.dateAdded), subLocations: [], index });
  }
  const locations = await backend.fetchLocations();
  const locationByPath = new Map(locations.map((l) => [path.resolve(l.path), l.id]));
  const locationIds = new Map(); // dump id -> ours
  const folders = new Map(); // dump id -> absolute folder
  for (const l of dump.locations) {
    const dir = path.join(folder, l.relativeFolder);
    const id = locationByPath.get(path.resolve(dir));
    if (!id) throw new Error(`location ${dir} is not among the backend's locations after createLocation`);
    locationIds.set(l.id, id);
    folders.set(l.id, dir);
  }
  times.locations_ms = ms(t);

  t = performance.now();
  const withChildren = [];
  for (const tag of dump.tags) {
    await backend.createTag({ ...tag, dateAdded: new Date(tag.dateAdded), subTags: [] });
    if (tag.subTags.length) withChildren.push(tag);
  }
  for (const tag of withChildren) await backend.saveTag({ ...tag, dateAdded: new Date(tag.dateAdded) });
  times.tags_ms = ms(t);
  const tagIds = await tagIdMap(backend, dump);

  t = performance.now();
  for (const l of dump.locations) {
    const dir = folders.get(l.id);
    const files = dump.files.filter((f) => f.locationId === l.id);
    for (let i = 0; i < files.length; i += CHUNK) {
      const dtos = files.slice(i, i + CHUNK).map((f) => ({
        ...fileDto(f),
        locationId: locationIds.get(l.id),
        absolutePath: path.join(dir, f.relativePath),
        tags: [],
      }));
      await backend.createFilesFromPath(dir, dtos);
    }
    log(`  created ${files.length} files in ${l.relativeFolder}`);
  }
  times.create_files_ms = ms(t);

  // The app saves a file as it read it, with the tags the user gave it.
  t = performance.now();
  const created = await backend.fetchFiles('dateAdded', OrderDirection.Asc);
  if (created.length !== dump.files.length) {
    throw new Error(`the backend holds ${created.length} files after createFilesFromPath, the dump ${dump.files.length}`);
  }
  const byPlace = new Map(created.map((f) => [place(f.locationId, f.relativePath), f]));
  const saves = dump.files.map((f) => {
    const ours = byPlace.get(place(locationIds.get(f.locationId), f.relativePath));
    if (!ours) throw new Error(`file ${f.relativePath} is missing after createFilesFromPath`);
    return { ...ours, tags: f.tags.map((id) => tagIds.get(id)) };
  });
  for (let i = 0; i < saves.length; i += CHUNK) {
    await backend.saveFiles(saves.slice(i, i + CHUNK));
    if ((i / CHUNK) % 5 === 4) log(`  tagged ${i + CHUNK} files`);
  }
  times.save_files_ms = ms(t);
  return { times, locationIds };
}

function place(locationId, relativePath) {
  return `${locationId}\u0000${relativePath}`;
}

/** Dump tag id -> the backend's, by name (every tag name of the workload is unique). */
async function tagIdMap(backend, dump) {
  const byName = new Map();
  for (const t of await backend.fetchTags()) byName.set(t.name, t.id);
  const ids = new Map();
  for (const t of dump.tags) {
    const id = byName.get(t.name);
    if (!id) throw new Error(`tag ${t.name} is not among the backend's tags`);
    ids.set(t.id, id);
  }
  return ids;
}

// ------------------------------------------------------------------------------------------
// Comparison

/**
 * Fails unless `ours` lists the same files as `baseline`, in the same order, with the same
 * dateAdded: ids compared after mapping ours to the dump's by location and relative path.
 */
function checkSame(what, baseline, ours, dumpLocation) {
  if (ours.length !== baseline.length) {
    throw new Error(`${what}: ours returned ${ours.length} files, the prototype ${baseline.length}`);
  }
  for (let i = 0; i < ours.length; i++) {
    const b = baseline[i];
    const o = ours[i];
    const same =
      dumpLocation.get(o.locationId) === b.locationId &&
      o.relativePath === b.relativePath &&
      toDate(o.dateAdded).getTime() === b.dateAdded.getTime();
    if (!same) {
      throw new Error(
        `${what}: file ${i} differs: ours ${o.locationId} ${o.relativePath} added ${toDate(o.dateAdded).getTime()}, ` +
          `the prototype's ${b.locationId} ${b.relativePath} added ${b.dateAdded.getTime()}`,
      );
    }
    if (!(o.dateAdded instanceof Date)) throw new Error(`${what}: ours returned dateAdded as ${typeof o.dateAdded}`);
  }
}

function gc() {
  if (typeof global.gc === 'function') global.gc();
}

/** One warm-up of each, then `runs` timed runs alternating baseline and ours; medians. */
async function timed(runs, baselineFn, oursFn) {
  gc();
  let t = performance.now();
  let baseline = baselineFn();
  const baselineFirst = ms(t);
  gc();
  t = performance.now();
  let ours = await oursFn();
  const oursFirst = ms(t);
  const b = [];
  const o = [];
  for (let i = 0; i < runs; i++) {
    baseline = ours = null;
    gc();
    t = performance.now();
    baseline = baselineFn();
    b.push(ms(t));
    baseline = null;
    gc();
    t = performance.now();
    ours = await oursFn();
    o.push(ms(t));
  }
  baseline = baselineFn();
  return {
    baseline: { ms: round(median(b)), first_ms: round(baselineFirst), runs_ms: b.map((x) => round(x)) },
    ours: { ms: round(median(o)), first_ms: round(oursFirst), runs_ms: o.map((x) => round(x)) },
    results: { baseline, ours },
  };
}

// ------------------------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv.slice(2));
  relaunchIfNeeded();
  const Y = require(path.join(here, 'node_modules', 'yjs'));
  const yjsVersion = require(path.join(here, 'node_modules', 'yjs', 'package.json')).version;
  const Library = loadLibrary(o.addon);
  const { SyncBackend, OrderDirection } = loadDataStorage();

  fs.mkdirSync(o.workDir || os.tmpdir(), { recursive: true });
  const work = fs.mkdtempSync(path.join(o.workDir || os.tmpdir(), 'onefolder-node-bench-'));
  const folder = path.join(work, 'library');
  const stateDir = path.join(work, 'state');
  fs.mkdirSync(folder);
  try {
    const dump = loadDump(o, work);
    const tag = searchTag(dump);
    log(`search: tag ${tag.name} (${tag.files} files)`);

    // The prototype.
    let t = performance.now();
    const update = buildPrototype(Y, dump);
    const protoBuildMs = ms(t);
    log(`prototype: built and encoded, ${update.length} bytes (${protoBuildMs.toFixed(0)} ms)`);
    gc();
    const doc = new Y.Doc();
    t = performance.now();
    Y.applyUpdate(doc, update);
    const protoLoadMs = ms(t);
    const protoFiles = doc.getMap('files');
    if (protoFiles.size !== dump.files.length) {
      throw new Error(`the prototype's document holds ${protoFiles.size} files, the dump ${dump.files.length}`);
    }
    log(`prototype: loaded into a fresh document (${protoLoadMs.toFixed(0)} ms)`);

    // Ours: populate, close, cold open.
    t = performance.now();
    let library = await Library.create({ folder, stateDir, deviceName: 'bench', engine: o.engine, store: o.store });
    let backend = await SyncBackend.init(library);
    const { times: populateTimes, locationIds } = await populate(backend, dump, folder, OrderDirection);
    await library.close();
    const populateMs = ms(t);
    log(`ours: populated (${(populateMs / 1000).toFixed(1)} s)`);
    const dumpLocation = new Map([...locationIds].map(([d, ours]) => [ours, d]));
    backend = library = null;
    gc();

    t = performance.now();
    library = await Library.open({ folder, stateDir, deviceName: 'bench', engine: o.engine, store: o.store });
    const openLibraryMs = ms(t);
    backend = await SyncBackend.init(library);
    const openMs = ms(t);
    log(`ours: cold open (${openMs.toFixed(0)} ms, of which Library.open ${openLibraryMs.toFixed(0)} ms)`);
    const ourTag = (await tagIdMap(backend, dump)).get(tag.id);

    const key = 'dateAdded';
    const desc = OrderDirection.Desc;
    log(`fetchFiles('${key}', Desc): 1 warm-up + ${o.runs} runs each`);
    const fetch = await timed(
      o.runs,
      () => prototypeFetchFiles(protoFiles, key, true),
      () => backend.fetchFiles(key, desc),
    );
    checkSame('fetchFiles', fetch.results.baseline, fetch.results.ours, dumpLocation);
    const fetchedFiles = fetch.results.ours.length;
    delete fetch.results;

    const criterion = (id) => ({ key: 'tags', valueType: 'array', operator: 'contains', value: [id] });
    log(`searchFiles(tags contains ${tag.name}): 1 warm-up + ${o.runs} runs each`);
    const search = await timed(
      o.runs,
      () => prototypeSearchFiles(protoFiles, criterion(tag.id), key, true),
      () => backend.searchFiles(criterion(ourTag), key, desc),
    );
    checkSame('searchFiles', search.results.baseline, search.results.ours, dumpLocation);
    if (search.results.ours.length !== tag.files) {
      throw new Error(`searchFiles found ${search.results.ours.length} files, the dump has ${tag.files} with the tag`);
    }
    delete search.results;
    await library.close();
    doc.destroy();

    const ratio = (a, b) => (b > 0 ? round(a / b, 4) : null);
    const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' });
    const out = {
      step: 'node-data-storage',
      preset: o.preset,
      date: `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
      commit: git.status === 0 ? git.stdout.trim() : undefined,
      node: process.version,
      yjs: yjsVersion,
      engine: o.engine,
      store: o.store,
      addon: o.addon ? 'cdylib' : 'index.js',
      runs: o.runs,
      files: dump.files.length,
      tags: dump.tags.length,
      locations: dump.locations.length,
      assignments: dump.files.reduce((n, f) => n + f.tags.length, 0),
      search_tag: tag.name,
      search_files: tag.files,
      fetch_files: fetchedFiles,
      verified: true,
      baseline: {
        build_ms: round(protoBuildMs),
        update_bytes: update.length,
        load_ms: round(protoLoadMs),
        fetch: fetch.baseline,
        search: search.baseline,
      },
      ours: {
        populate_ms: round(populateMs),
        populate: Object.fromEntries(Object.entries(populateTimes).map(([k, v]) => [k, round(v)])),
        open_ms: round(openMs),
        open_library_ms: round(openLibraryMs),
        fetch: fetch.ours,
        search: search.ours,
      },
      ratios: {
        fetch: ratio(fetch.ours.ms, fetch.baseline.ms),
        search: ratio(search.ours.ms, search.baseline.ms),
        open_vs_load: ratio(openMs, protoLoadMs),
      },
      peak_rss_kib: process.resourceUsage().maxRSS,
      ms: round(ms(started)),
    };
    const line = JSON.stringify(out);
    if (o.json) {
      fs.mkdirSync(path.dirname(path.resolve(o.json)), { recursive: true });
      fs.writeFileSync(o.json, `${JSON.stringify(out, null, 2)}\n`);
      log(`wrote ${o.json}`);
    }
    console.log(line);
  } finally {
    if (o.keep) log(`kept ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`data-storage.js: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  });
} else {
  module.exports = { buildPrototype, prototypeFetchFiles, prototypeSearchFiles, searchTag, checkSame, loadDump };
}

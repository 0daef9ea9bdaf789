#!/usr/bin/env node
// Writes the prototype's Yjs document of a workload dump, for `prototype-query.js`:
//
//   node bench/prototype-doc.js DUMP OUT
//
// DUMP is the JSON of `onefolder-bench dump` (OneFolder's DTOs); OUT receives
// `Y.encodeStateAsUpdate` of one `Y.Doc` with the root maps `files`, `tags`, `locations` and
// `searches`, each record one whole plain object under its id — the prototype's layout, built
// as `data-storage.js` builds it. npm `yjs` comes from the directory in `ONEFOLDER_BENCH_YJS`
// when set (an installed, pinned package), else from this package's `node_modules`.
// Prints one JSON line: the records written and the update's size.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { buildPrototype } = require('./data-storage.js');

function main() {
  const [dumpFile, out] = process.argv.slice(2);
  if (!dumpFile || !out) {
    console.error('usage: node bench/prototype-doc.js DUMP OUT');
    process.exit(2);
  }
  const Y = require(process.env.ONEFOLDER_BENCH_YJS || path.join(__dirname, '..', 'node_modules', 'yjs'));
  const dump = JSON.parse(fs.readFileSync(dumpFile, 'utf8'));
  const update = buildPrototype(Y, dump);
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, update);
  const line = {
    files: dump.files.length,
    tags: dump.tags.length,
    locations: dump.locations.length,
    update_bytes: update.length,
  };
  console.log(JSON.stringify(line));
}

try {
  main();
} catch (e) {
  console.error(`prototype-doc.js: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}

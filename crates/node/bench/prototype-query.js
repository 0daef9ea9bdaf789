#!/usr/bin/env node
// The prototype's side of `cargo xtask bench`'s `cli-query` step: one whole process that opens
// the prototype's library and answers one tag query, as `onefolder-sync files --tag X
// --recursive --json` does on ours. Times nothing itself: the caller times the process.
//
//   node bench/prototype-query.js DOC TAG_ID
//
// DOC is the prototype's document (`Y.encodeStateAsUpdate`, written by `prototype-doc.js`). It
// is loaded into a fresh `Y.Doc` with `Y.applyUpdate`; the query is the prototype's in-memory
// one: the subtree of TAG_ID from the tag records' `subTags`, then every record of `files`
// whose `tags` hold a tag of the subtree. The files found are printed as a pretty JSON array
// of their records (as the CLI prints its rows). npm `yjs` comes from `ONEFOLDER_BENCH_YJS`
// when set, else from this package's `node_modules`.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

function main() {
  const [docFile, tagId] = process.argv.slice(2);
  if (!docFile || !tagId) {
    console.error('usage: node bench/prototype-query.js DOC TAG_ID');
    process.exit(2);
  }
  const Y = require(process.env.ONEFOLDER_BENCH_YJS || path.join(__dirname, '..', 'node_modules', 'yjs'));
  const doc = new Y.Doc();
  Y.applyUpdate(doc, fs.readFileSync(docFile));
  const tags = doc.getMap('tags');
  const files = doc.getMap('files');
  if (!tags.has(tagId)) throw new Error(`no tag ${tagId} in ${docFile}`);
  const subtree = new Set([tagId]);
  const todo = [tagId];
  while (todo.length) {
    const tag = tags.get(todo.pop());
    for (const child of (tag && tag.subTags) || []) {
      if (!subtree.has(child)) {
        subtree.add(child);
        todo.push(child);
      }
    }
  }
  const found = [];
  for (const f of files.values()) {
    if (f.tags.some((t) => subtree.has(t))) found.push(f);
  }
  process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
}

try {
  main();
} catch (e) {
  console.error(`prototype-query.js: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}

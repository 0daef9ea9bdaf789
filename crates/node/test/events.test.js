'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Library } = require('..');
const { tempRoot, until } = require('../scripts/test-helpers');

test('a corrupt segment in the shared folder is a warning, not an exception', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const lib = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' });
  t.after(() => lib.close());
  await lib.createTag('Fine');
  await lib.syncOnce();

  const events = [];
  lib.onEvent((e) => events.push(e));
  // A peer's folder (a device id is a UUID) holding one segment of garbage.
  const peer = crypto.randomUUID();
  const dir = path.join(tmp.folder, 'onefolder_tags', 'database', peer);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '00000000000000000001.seg'), crypto.randomBytes(200));

  const report = await lib.syncOnce();
  assert.equal(report.ingest.skipped, 1);
  const warning = await until('a warning event', () => events.find((e) => e.event === 'warning'));
  assert.equal(warning.folder, peer);
  assert.equal(warning.file, '00000000000000000001.seg');
  assert.equal(typeof warning.message, 'string');

  const status = await lib.status();
  assert.equal(status.warnings.length, 1);
  assert.equal(status.warnings[0].folder, peer);
  // The library still works.
  assert.deepEqual((await lib.tags()).map((tag) => tag.name), ['Fine']);
});

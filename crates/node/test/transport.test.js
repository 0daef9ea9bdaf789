// A library whose database is in an S3 bucket (moto, started here on 127.0.0.1), reached
// through the binding's `transport` option: two computers converge without a shared folder.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Library } = require('..');
const { tempRoot, until, rejectsWith, startServer } = require('../scripts/test-helpers');

test('two devices converge through an S3 bucket', async (t) => {
  const s3 = await startServer('s3');
  t.after(s3.stop);
  const bucket = `onefolder-node-${process.pid}`;
  const created = await fetch(`${s3.endpoint}/${bucket}`, { method: 'PUT' });
  assert.ok(created.ok, `create the bucket: ${created.status}`);
  // The same settings the CLI's --transport s3://… reads (test credentials of the local moto).
  Object.assign(process.env, {
    ONEFOLDER_SYNC_S3_ENDPOINT: s3.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIAONEFOLDERTEST',
    AWS_SECRET_ACCESS_KEY: 's3-test-secret-key-9d41',
  });
  const transport = `s3://${bucket}/photos`;
  // Each computer has its own copy of the pictures; only the database is in the bucket.
  const one = tempRoot();
  const two = tempRoot();
  t.after(one.cleanup);
  t.after(two.cleanup);
  await rejectsWith(
    Library.join({ folder: one.folder, stateDir: one.stateDir('a'), deviceName: 'A', transport }),
    'NOT_A_LIBRARY',
  );
  const a = await Library.create({ folder: one.folder, stateDir: one.stateDir('a'), deviceName: 'A', transport });
  t.after(() => a.close());
  await a.syncOnce();
  const b = await Library.join({ folder: two.folder, stateDir: two.stateDir('b'), deviceName: 'B', transport });
  t.after(() => b.close());

  const loc = await a.addLocation('Pictures', '');
  const cats = await a.createTag('Cats');
  await a.assign(await a.upsertFile(loc, 'cat.jpg', { size: 5 }), cats);
  const dogs = await b.createTag('Dogs');
  const converged = await until('both devices to converge through the bucket', async () => {
    await a.syncOnce();
    await b.syncOnce();
    const [ea, eb] = [await a.export(), await b.export()];
    return ea === eb && JSON.parse(ea).tags[dogs] && Object.keys(JSON.parse(eb).files).length === 1 ? ea : null;
  }, 60_000);
  assert.deepEqual(Object.keys(JSON.parse(converged).tags).sort(), [cats, dogs].sort());
  const status = await b.status();
  assert.ok(status.peers[(await a.status()).device], 'B applied what A wrote to the bucket');

  for (const [spec, says] of [['gdrive:Pictures', 'Google Drive'], ['ftp://x', 'unknown transport']]) {
    const options = { folder: one.folder, stateDir: two.stateDir('x'), deviceName: 'X', transport: spec };
    const e = await rejectsWith(Library.create(options), 'INVALID');
    assert.match(e.message, new RegExp(says), e.message);
  }
});

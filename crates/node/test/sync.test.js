'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Library } = require('..');
const { tempRoot, until } = require('../scripts/test-helpers');

test('two devices converge through one shared folder with syncOnce', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const a = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' });
  t.after(() => a.close());
  await a.syncOnce();
  const b = await Library.join({ folder: tmp.folder, stateDir: tmp.stateDir('b'), deviceName: 'B' });
  t.after(() => b.close());

  // Concurrent edits on both devices, including the same tag created on each.
  const locA = await a.addLocation('Pictures', '');
  const locB = await b.addLocation('Pictures', '');
  assert.equal(locA, locB, 'a location inside the library folder has one id everywhere');
  const catsA = await a.createTag('Cats');
  const catsB = await b.createTag('Cats');
  assert.equal(catsA, catsB, 'the same tag created twice is one tag');
  const dogs = await b.createTag('Dogs', null, null);
  const x = await a.upsertFile(locA, 'x.jpg', { size: 1 });
  const y = await b.upsertFile(locB, 'y.jpg', { size: 2 });
  await a.assign(x, catsA);
  await b.assign(y, dogs);

  const exports = await until('both exports to be equal', async () => {
    await a.syncOnce();
    await b.syncOnce();
    const [ea, eb] = [await a.export(), await b.export()];
    return ea === eb && JSON.parse(ea).tags[dogs] && JSON.parse(eb).files[x] ? [ea, eb] : null;
  });
  const merged = JSON.parse(exports[0]);
  assert.deepEqual(Object.keys(merged.tags).sort(), [catsA, dogs].sort());
  assert.deepEqual(Object.keys(merged.files).sort(), [x, y].sort());
  assert.deepEqual(merged.files[x].tags, [catsA]);
  assert.deepEqual(merged.files[y].tags, [dogs]);

  const statusA = await a.status();
  const statusB = await b.status();
  assert.ok(statusA.peers[statusB.device], 'A has applied segments of B');
  assert.ok(statusB.peers[statusA.device], 'B has applied segments of A');
  assert.equal(statusA.pendingEdits, 0);
});

test('the sync loop carries edits and reports them as events', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const fast = { debounceMs: 20, pollIntervalMs: 100 };
  const a = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A', ...fast });
  t.after(() => a.close());
  await a.syncOnce();
  const b = await Library.join({ folder: tmp.folder, stateDir: tmp.stateDir('b'), deviceName: 'B', ...fast });
  t.after(() => b.close());

  const eventsA = [];
  const eventsB = [];
  a.onEvent((e) => eventsA.push(e));
  const listenerB = b.onEvent((e) => eventsB.push(e));
  await a.startSync();
  await b.startSync();
  await assert.rejects(a.startSync(), (e) => e.code === 'INVALID');

  const tag = await a.createTag('Loop');
  await until('B to see the tag', async () => (await b.tags()).some((x) => x.id === tag));
  await until('an applied event on B', () => eventsB.some((e) => e.event === 'applied'));
  const applied = eventsB.find((e) => e.event === 'applied');
  assert.equal(typeof applied.device, 'string');
  assert.equal(typeof applied.seq, 'number');
  assert.ok(eventsA.some((e) => e.event === 'edited'));
  await until('a flushed event on A', () => eventsA.some((e) => e.event === 'flushed'));

  assert.equal(b.offEvent(listenerB), true);
  assert.equal(b.offEvent(listenerB), false);

  // An edit right before stopSync is written by the loop's final flush.
  await b.createTag('Last');
  await b.stopSync();
  assert.equal((await b.status()).pendingEdits, 0, 'stopSync resolves after the final flush');
  await a.stopSync();
  await a.stopSync(); // stopping a stopped loop is fine
  await until('A to see the last tag', async () => {
    await a.syncOnce();
    return (await a.tags()).some((x) => x.name === 'Last');
  });
});

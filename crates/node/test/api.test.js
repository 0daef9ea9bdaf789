'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Library } = require('..');
const { tempRoot, rejectsWith } = require('../scripts/test-helpers');

test('create, edit and query a library', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const lib = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' });
  t.after(() => lib.close());

  const loc = await lib.addLocation('Pictures', '');
  assert.equal(await lib.addLocation('Pictures', ''), loc, 'the same folder is one location');
  const locations = await lib.locations();
  assert.deepEqual(locations.map((l) => [l.id, l.name, l.relPath]), [[loc, 'Pictures', '']]);

  const animals = await lib.createTag('Animals');
  const cats = await lib.createTag('Cats', animals, 'orange');
  assert.equal(await lib.createTag('Cats', animals), cats, 'a tag of that name there is the tag');
  const tags = await lib.tags();
  assert.equal(tags.length, 2);
  const catTag = tags.find((tag) => tag.id === cats);
  assert.equal(catTag.name, 'Cats');
  assert.equal(catTag.parent, animals);
  assert.equal(catTag.color, 'orange');
  assert.equal(typeof catTag.dateAdded, 'number');
  assert.equal(tags.find((tag) => tag.id === animals).parent, undefined);

  const a = await lib.upsertFile(loc, 'a.jpg', { size: 10, dateModified: 1700000000000, width: 4, height: 3 });
  const b = await lib.upsertFile(loc, 'sub/b.png', { size: 20 });
  const c = await lib.upsertFile(loc, 'c.gif');
  await lib.assign(a, cats);
  await lib.assign(b, animals);
  await lib.assign(c, animals);
  await lib.unassign(c, animals);

  const files = await lib.files();
  assert.equal(files.length, 3);
  const fileA = files.find((f) => f.id === a);
  assert.deepEqual(
    [fileA.path, fileA.name, fileA.extension, fileA.size, fileA.width, fileA.height, fileA.dateModified, fileA.tags],
    ['a.jpg', 'a.jpg', 'jpg', 10, 4, 3, 1700000000000, [cats]],
  );
  assert.equal(fileA.location, loc);
  assert.deepEqual(files.find((f) => f.id === c).tags, []);

  const ids = (list) => list.map((f) => f.id).sort();
  assert.deepEqual(ids(await lib.filesWithTag(animals, true)), [a, b].sort());
  assert.deepEqual(ids(await lib.filesWithTag(animals, false)), [b]);

  await lib.renameTag(cats, 'Felines');
  assert.equal((await lib.tags()).find((tag) => tag.id === cats).name, 'Felines');

  const exported = JSON.parse(await lib.export());
  assert.deepEqual(Object.keys(exported).sort(), ['files', 'locations', 'searches', 'tags']);
  assert.equal(Object.keys(exported.files).length, 3);
  assert.equal(exported.tags[cats].name, 'Felines');

  await lib.deleteTag(animals);
  assert.deepEqual(await lib.tags(), [], 'the subtree went with it');
  assert.deepEqual((await lib.files()).find((f) => f.id === a).tags, []);

  const status = await lib.status();
  assert.equal(status.engine, 'yrs');
  assert.equal(status.store, 'sqlite');
  assert.ok(status.pendingEdits > 0);
  assert.deepEqual(status.warnings, []);
});

test('errors carry a code', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  await rejectsWith(
    Library.join({ folder: tmp.folder, stateDir: tmp.stateDir('x'), deviceName: 'X' }),
    'NOT_A_LIBRARY',
  );
  await rejectsWith(
    Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('x'), deviceName: 'X', engine: 'nosuch' }),
    'INVALID',
  );
  await rejectsWith(
    Library.create({ folder: tmp.folder, stateDir: `${tmp.folder}/state`, deviceName: 'X' }),
    'INVALID',
  );

  const lib = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' });
  const loc = await lib.addLocation('Pictures', '');
  const file = await lib.upsertFile(loc, 'a.jpg');
  await rejectsWith(lib.assign(file, 'no-such-tag'), 'NOT_FOUND');
  await rejectsWith(lib.assign('no-such-file', 'no-such-tag'), 'NOT_FOUND');
  await rejectsWith(lib.renameTag('no-such-tag', 'x'), 'NOT_FOUND');
  await rejectsWith(lib.createTag('   '), 'INVALID');
  await rejectsWith(lib.upsertFile(loc, '../outside.jpg'), 'INVALID');
  await lib.syncOnce();
  await lib.close();
  await rejectsWith(lib.tags(), 'INVALID');
  assert.throws(() => lib.onEvent(() => {}), (e) => e instanceof Error && e.code === 'INVALID');

  // The library exists now: creating it again is refused, joining with another engine too.
  await rejectsWith(
    Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('b'), deviceName: 'B' }),
    'INVALID',
  );
  await rejectsWith(
    Library.join({ folder: tmp.folder, stateDir: tmp.stateDir('c'), deviceName: 'C', engine: 'automerge' }),
    'WRONG_ENGINE',
  );
  await rejectsWith(
    Library.open({ folder: tmp.folder, stateDir: tmp.stateDir('never-set-up'), deviceName: 'D' }),
    'INVALID',
  );
});

test('the state lock: a second open of one state directory is LOCKED', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const options = { folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' };
  const first = await Library.create(options);
  await first.createTag('Kept');
  await rejectsWith(Library.open(options), 'LOCKED');
  await first.close();
  // Once closed, the state opens again, with what was written.
  const again = await Library.open(options);
  t.after(() => again.close());
  assert.deepEqual((await again.tags()).map((tag) => tag.name), ['Kept']);
});

test('lmdb and automerge open too', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const lib = await Library.create({
    folder: tmp.folder,
    stateDir: tmp.stateDir('a'),
    deviceName: 'A',
    engine: 'automerge',
    store: 'lmdb',
  });
  await lib.createTag('Automerge');
  const status = await lib.status();
  assert.equal(status.engine, 'automerge');
  assert.equal(status.store, 'lmdb');
  await lib.close();
  const joined = await Library.join({ folder: tmp.folder, stateDir: tmp.stateDir('b'), deviceName: 'B' });
  t.after(() => joined.close());
  assert.equal((await joined.status()).engine, 'automerge', 'join takes the engine from library.json');
});

test('the rest of the model: tag moves and merges, annotations, exclusions, searches, import', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const lib = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' });
  t.after(() => lib.close());
  const loc = await lib.addLocation('Pictures', '');
  const animals = await lib.createTag('Animals');
  const cats = await lib.createTag('Cats');
  const dogs = await lib.createTag('Dogs');
  await lib.moveTag(cats, animals);
  await lib.moveTag(dogs, animals);
  await lib.reorderTag(dogs, null, cats);
  let tags = Object.fromEntries((await lib.tags()).map((x) => [x.id, x]));
  assert.equal(tags[cats].parent, animals);
  assert.ok(tags[dogs].order < tags[cats].order, 'Dogs placed before Cats');
  await lib.setTagColor(cats, 'orange');
  await lib.setTagHidden(cats, true);
  tags = Object.fromEntries((await lib.tags()).map((x) => [x.id, x]));
  assert.deepEqual([tags[cats].color, tags[cats].isHidden], ['orange', true]);
  await rejectsWith(lib.moveTag(animals, cats), 'INVALID');

  const a = await lib.upsertFile(loc, 'a.jpg', { size: 1 });
  const b = await lib.upsertFile(loc, 'b.jpg', { size: 2 });
  await lib.assign(a, cats);
  await lib.setAnnotations(a, 'on the sofa');
  assert.deepEqual(await lib.fileCounts(), { files: 2, untagged: 1 });
  assert.deepEqual((await lib.untaggedFiles()).map((f) => f.id), [b]);
  await lib.mergeTags(cats, dogs);
  const [merged] = (await lib.files()).filter((f) => f.id === a);
  assert.deepEqual([merged.tags, merged.annotations], [[dogs], 'on the sofa']);
  await lib.setAnnotations(a, null);
  await lib.removeFile(b);
  assert.deepEqual(await lib.fileCounts(), { files: 1, untagged: 0 });

  await lib.setExclusion(loc, 'raw', true);
  assert.deepEqual((await lib.locations())[0].exclusions, ['raw']);
  const search = await lib.saveSearch('Dogs', JSON.stringify([{ key: 'tags', operator: 'contains', value: [dogs] }]), false);
  assert.deepEqual((await lib.searches()).map((s) => [s.id, s.name, s.matchAny]), [[search, 'Dogs', false]]);
  await rejectsWith(lib.saveSearch('Bad', 'not json', false), 'INVALID');

  // A replace-import makes the library equal to the export it was given.
  const before = await lib.export();
  await lib.deleteSearch(search);
  await lib.removeLocation(loc);
  assert.deepEqual(await lib.fileCounts(), { files: 0, untagged: 0 });
  await lib.import(before, 'replace');
  assert.equal(await lib.export(), before);
  await rejectsWith(lib.import(before, 'sideways'), 'INVALID');
  await rejectsWith(lib.import('{', 'merge'), 'INVALID');
});

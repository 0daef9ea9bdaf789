// OneFolder's DataStorage (dist/data-storage.js) on the binding, against the semantics of the
// app's IndexedDB backend: DTO shapes, order and direction, criteria, mergeTags, clear, and
// what a synced library adds (tree moves from subTags, saves that keep a peer's edits).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Library } = require('..');
const { SyncBackend, OrderDirection, ROOT_TAG_ID } = require('../dist/data-storage.js');
const { tempRoot, until, rejectsWith } = require('../scripts/test-helpers');

const DAY = 86_400_000;

function tagDto(id, name, extra = {}) {
  return {
    id,
    name,
    dateAdded: new Date(1_700_000_000_000),
    color: '',
    subTags: [],
    impliedTags: [],
    copyImpliedTags: false,
    isHidden: false,
    ...extra,
  };
}

function fileDto(locationId, root, relativePath, extra = {}) {
  const name = path.basename(relativePath);
  return {
    id: `app-${relativePath}`,
    ino: `ino-${relativePath}`,
    locationId,
    relativePath,
    absolutePath: path.join(root, relativePath),
    tags: [],
    dateAdded: new Date(1_700_000_000_000),
    dateModified: new Date(1_700_000_000_000),
    dateLastIndexed: new Date(1_700_000_000_000),
    name,
    extension: name.split('.').pop().toLowerCase(),
    size: 1,
    width: 0,
    height: 0,
    dateCreated: new Date(1_700_000_000_000),
    ...extra,
  };
}

async function setup(t, name = 'a', create = true) {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const open = create ? Library.create : Library.join;
  const library = await open({ folder: tmp.folder, stateDir: tmp.stateDir(name), deviceName: name });
  t.after(() => library.close());
  let changes = 0;
  const backend = await SyncBackend.init(library, { onChange: () => changes++ });
  return { tmp, library, backend, changes: () => changes };
}

async function withLocation(backend, tmp) {
  await backend.createLocation({ id: 'app-loc', path: tmp.folder, dateAdded: new Date(5), subLocations: [], index: 0 });
  const [loc] = await backend.fetchLocations();
  return loc.id;
}

test('the tag tree: a root tag, app ids, subTags saved as moves and order, implied tags', async (t) => {
  const { backend, changes } = await setup(t);
  let tags = await backend.fetchTags();
  assert.deepEqual(tags.map((x) => x.id), [ROOT_TAG_ID], 'an empty library has only the root tag');
  // Creating the root, as OneFolder's init does on an empty database, changes nothing.
  await backend.createTag(tagDto(ROOT_TAG_ID, 'Root'));

  await backend.createTag(tagDto('animals', 'Animals', { color: '#f00' }));
  await backend.createTag(tagDto('cats', 'Cats'));
  await backend.createTag(tagDto('dogs', 'Dogs'));
  // The app adds children by saving the parent with its new subTags.
  await backend.saveTag(tagDto('animals', 'Animals', { color: '#f00', subTags: ['dogs', 'cats'] }));
  await backend.saveTag(tagDto(ROOT_TAG_ID, 'Root', { subTags: ['animals'] }));
  tags = await backend.fetchTags();
  const byId = Object.fromEntries(tags.map((x) => [x.id, x]));
  assert.deepEqual(byId[ROOT_TAG_ID].subTags, ['animals'], 'moved tags left the root');
  assert.deepEqual(byId.animals.subTags, ['dogs', 'cats'], 'children in the saved order');
  assert.equal(byId.animals.color, '#f00');
  assert.ok(byId.animals.dateAdded instanceof Date);
  assert.equal(byId.animals.dateAdded.getTime(), 1_700_000_000_000);

  // Reorder, rename, recolour, hide, imply.
  await backend.saveTag(tagDto('animals', 'Beasts', { subTags: ['cats', 'dogs'], impliedTags: [], isHidden: true }));
  await backend.saveTag(tagDto('cats', 'Cats', { impliedTags: ['animals'], copyImpliedTags: true }));
  tags = Object.fromEntries((await backend.fetchTags()).map((x) => [x.id, x]));
  assert.deepEqual(tags.animals.subTags, ['cats', 'dogs']);
  assert.equal(tags.animals.name, 'Beasts');
  assert.equal(tags.animals.color, '', 'a colour cleared reads as ""');
  assert.equal(tags.animals.isHidden, true);
  assert.deepEqual(tags.cats.impliedTags, ['animals']);
  assert.equal(tags.cats.copyImpliedTags, true);
  assert.ok(changes() >= 7, 'onChange follows every edit');

  // A move: the new parent's list takes the tag; the old parent's save without it is harmless.
  await backend.saveTag(tagDto(ROOT_TAG_ID, 'Root', { subTags: ['animals', 'dogs'] }));
  await backend.saveTag(tagDto('animals', 'Beasts', { subTags: ['cats'], isHidden: true }));
  tags = Object.fromEntries((await backend.fetchTags()).map((x) => [x.id, x]));
  assert.deepEqual(tags[ROOT_TAG_ID].subTags, ['animals', 'dogs']);
  assert.deepEqual(tags.animals.subTags, ['cats']);

  // Two siblings of one name are refused with a code; so is a tag under its own subtree.
  await rejectsWith(backend.createTag(tagDto('dogs2', ' DOGS ')), 'INVALID');
  await backend.createTag(tagDto('cats2', 'Kittens'));
  await rejectsWith(backend.saveTag(tagDto('cats', 'Cats', { subTags: ['animals'] })), 'INVALID');

  await backend.removeTags(['animals']);
  tags = await backend.fetchTags();
  assert.deepEqual(tags.map((x) => x.id).sort(), ['cats2', 'dogs', ROOT_TAG_ID].sort(), 'a removed tag takes its subtree');
  await backend.removeTags(['animals']); // gone already: nothing to do
});

test('files: library ids, this computer\'s paths, order and direction, saves that keep what a peer did', async (t) => {
  const { tmp, library, backend } = await setup(t);
  const loc = await withLocation(backend, tmp);
  await backend.createTag(tagDto('red', 'Red'));
  await backend.createTag(tagDto('blue', 'Blue'));
  const files = [
    fileDto(loc, tmp.folder, 'b.png', { size: 300, dateAdded: new Date(3 * DAY), tags: ['red'] }),
    fileDto(loc, tmp.folder, 'sub/a.jpg', { size: 100, dateAdded: new Date(1 * DAY), width: 640, height: 480 }),
    fileDto(loc, tmp.folder, 'c.JPG', { size: 200, dateAdded: new Date(2 * DAY) }),
  ];
  await backend.createFilesFromPath(tmp.folder, files);
  // Creating again (a rescan) skips what is there: nothing is duplicated or overwritten.
  await backend.createFilesFromPath(tmp.folder, [fileDto(loc, tmp.folder, 'b.png', { size: 999 })]);

  const byName = await backend.fetchFiles('name', OrderDirection.Asc);
  assert.deepEqual(byName.map((f) => f.name), ['a.jpg', 'b.png', 'c.JPG']);
  const a = byName[0];
  assert.equal(a.relativePath, 'sub/a.jpg');
  assert.equal(a.absolutePath, path.join(fs.realpathSync(tmp.folder), 'sub', 'a.jpg'));
  assert.equal(a.ino, 'ino-sub/a.jpg', 'the inode number is kept on this computer');
  assert.equal(a.locationId, loc);
  assert.equal(a.extension, 'jpg');
  assert.deepEqual([a.width, a.height, a.size], [640, 480, 100]);
  for (const key of ['dateAdded', 'dateModified', 'dateLastIndexed', 'dateCreated']) {
    assert.ok(a[key] instanceof Date, `${key} is a Date`);
  }
  assert.notEqual(a.id, 'app-sub/a.jpg', 'file ids are the library\'s, the same on every computer');
  assert.equal(byName[1].size, 300, 'the second create did not overwrite');

  const bySize = await backend.fetchFiles('size', OrderDirection.Desc);
  assert.deepEqual(bySize.map((f) => f.size), [300, 200, 100]);
  const byAdded = await backend.fetchFiles('dateAdded', OrderDirection.Asc);
  assert.deepEqual(byAdded.map((f) => f.name), ['a.jpg', 'c.JPG', 'b.png'], 'dateAdded of new files is the app\'s');
  const random = await backend.fetchFiles('random', OrderDirection.Asc);
  assert.deepEqual(random.map((f) => f.id).sort(), byName.map((f) => f.id).sort());

  assert.deepEqual((await backend.fetchFilesByID([a.id, 'nope'])).map((f) => f.id), [a.id]);
  assert.deepEqual((await backend.fetchFilesByKey('extension', 'png')).map((f) => f.name), ['b.png']);
  assert.deepEqual((await backend.fetchFilesByKey('size', 200)).map((f) => f.name), ['c.JPG']);
  assert.deepEqual((await backend.fetchFilesByKey('tags', 'red')).map((f) => f.name), ['b.png'], 'a tag, as the multi-entry index');
  assert.deepEqual((await backend.fetchFilesByKey('absolutePath', byName[0].absolutePath)).map((f) => f.name), ['a.jpg']);
  assert.deepEqual(await backend.countFiles(), [3, 2]);

  // The app read `a` with no tags; meanwhile another writer (a peer's edit arriving, here the
  // library itself) tagged it red. The app's save adds blue: red stays, the user never removed it.
  const [read] = await backend.fetchFilesByID([a.id]);
  await library.assign(a.id, 'red');
  await backend.saveFiles([{ ...read, tags: ['blue'], annotations: 'on the sofa' }]);
  let [saved] = await backend.fetchFilesByID([a.id]);
  assert.deepEqual(saved.tags.sort(), ['blue', 'red']);
  assert.equal(saved.annotations, 'on the sofa');
  // Removing a tag the app had read removes it.
  await backend.saveFiles([{ ...saved, tags: ['red'] }]);
  [saved] = await backend.fetchFilesByID([a.id]);
  assert.deepEqual(saved.tags, ['red']);
  // A rename on disk: the same id with a new relative path moves the record, tags and all.
  await backend.saveFiles([{ ...saved, relativePath: 'sub/renamed.jpg', name: 'renamed.jpg' }]);
  const renamed = (await backend.fetchFiles('name', OrderDirection.Asc)).find((f) => f.name === 'renamed.jpg');
  assert.ok(renamed, 'the renamed file is there');
  assert.deepEqual(renamed.tags, ['red']);
  assert.equal((await backend.fetchFiles('name', OrderDirection.Asc)).length, 3);

  await backend.removeFiles([renamed.id, 'nope']);
  assert.deepEqual(await backend.countFiles(), [2, 1]);

  // A file given only by its absolute path lands at the path relative to its location.
  const onlyAbsolute = fileDto(loc, tmp.folder, 'd/e.jpg', { relativePath: '' });
  onlyAbsolute.absolutePath = path.join(fs.realpathSync(tmp.folder), 'd', 'e.jpg');
  await backend.createFilesFromPath(tmp.folder, [onlyAbsolute]);
  assert.deepEqual((await backend.fetchFilesByKey('relativePath', 'd/e.jpg')).map((f) => f.name), ['e.jpg']);
});

test('mergeTags moves every file of one tag to another and removes it; clear empties the library', async (t) => {
  const { tmp, backend } = await setup(t);
  const loc = await withLocation(backend, tmp);
  await backend.createTag(tagDto('cat', 'Cat'));
  await backend.createTag(tagDto('cats', 'Cats'));
  await backend.createTag(tagDto('kitten', 'Kitten'));
  await backend.saveTag(tagDto('cat', 'Cat', { subTags: ['kitten'] }));
  await backend.createFilesFromPath(tmp.folder, [
    fileDto(loc, tmp.folder, 'one.jpg', { tags: ['cat'] }),
    fileDto(loc, tmp.folder, 'both.jpg', { tags: ['cat', 'cats'] }),
    fileDto(loc, tmp.folder, 'other.jpg', { tags: ['cats'] }),
  ]);
  await backend.mergeTags('cat', 'cats');
  const files = await backend.fetchFiles('name', OrderDirection.Asc);
  assert.deepEqual(files.map((f) => [f.name, f.tags]), [
    ['both.jpg', ['cats']],
    ['one.jpg', ['cats']],
    ['other.jpg', ['cats']],
  ]);
  const tags = Object.fromEntries((await backend.fetchTags()).map((x) => [x.id, x]));
  assert.equal(tags.cat, undefined, 'the merged tag is gone');
  assert.deepEqual(tags.cats.subTags, ['kitten'], 'its children moved to the tag it was merged into');
  await rejectsWith(backend.mergeTags('cat', 'cats'), 'NOT_FOUND');

  await backend.createSearch({ id: 's', name: 'All', criteria: [], index: 0 });
  await backend.clear();
  assert.deepEqual(await backend.countFiles(), [0, 0]);
  assert.deepEqual((await backend.fetchTags()).map((x) => x.id), [ROOT_TAG_ID]);
  assert.deepEqual(await backend.fetchLocations(), []);
  assert.deepEqual(await backend.fetchSearches(), []);
});

test('searchFiles: OneFolder\'s criteria, match all or any, order and direction', async (t) => {
  const { tmp, backend } = await setup(t);
  const loc = await withLocation(backend, tmp);
  await backend.createTag(tagDto('animals', 'Animals', { subTags: [] }));
  await backend.createTag(tagDto('cats', 'Cats'));
  await backend.saveTag(tagDto('animals', 'Animals', { subTags: ['cats'] }));
  await backend.createFilesFromPath(tmp.folder, [
    fileDto(loc, tmp.folder, '2026/tom.jpg', { tags: ['cats'], size: 2_000_000, dateAdded: new Date('2026-01-10T10:00:00Z') }),
    fileDto(loc, tmp.folder, '2026/rex.png', { tags: ['animals'], size: 500, dateAdded: new Date('2026-02-01T10:00:00Z') }),
    fileDto(loc, tmp.folder, 'blank.gif', { size: 10, dateAdded: new Date('2025-12-31T10:00:00Z') }),
  ]);
  const names = (files) => files.map((f) => f.name);
  const tags = (operator, value) => ({ key: 'tags', valueType: 'array', operator, value });

  assert.deepEqual(names(await backend.searchFiles(tags('contains', ['animals']), 'name', OrderDirection.Asc)), ['rex.png']);
  assert.deepEqual(
    names(await backend.searchFiles(tags('containsRecursively', ['animals']), 'name', OrderDirection.Asc)),
    ['rex.png', 'tom.jpg'],
  );
  assert.deepEqual(names(await backend.searchFiles(tags('contains', []), 'name', OrderDirection.Asc)), ['blank.gif']);
  assert.deepEqual(
    names(await backend.searchFiles(tags('notContains', ['cats']), 'size', OrderDirection.Desc)),
    ['rex.png', 'blank.gif'],
  );
  const big = { key: 'size', valueType: 'number', operator: 'greaterThan', value: 1000 };
  const png = { key: 'extension', valueType: 'string', operator: 'equalsIgnoreCase', value: 'PNG' };
  assert.deepEqual(names(await backend.searchFiles([big, png], 'name', OrderDirection.Asc)), []);
  assert.deepEqual(names(await backend.searchFiles([big, png], 'name', OrderDirection.Asc, true)), ['rex.png', 'tom.jpg']);
  const inFolder = { key: 'relativePath', valueType: 'string', operator: 'startsWith', value: '2026/' };
  assert.deepEqual(names(await backend.searchFiles(inFolder, 'dateAdded', OrderDirection.Desc)), ['rex.png', 'tom.jpg']);
  const abs = { key: 'absolutePath', valueType: 'string', operator: 'startsWith', value: path.join(fs.realpathSync(tmp.folder), '2026') };
  assert.deepEqual(names(await backend.searchFiles(abs, 'name', OrderDirection.Asc)), ['rex.png', 'tom.jpg']);
  const onDay = { key: 'dateAdded', valueType: 'date', operator: 'equals', value: new Date('2026-01-10T00:00:00Z') };
  assert.deepEqual(names(await backend.searchFiles(onDay, 'name', OrderDirection.Asc)), ['tom.jpg']);
  const before = { key: 'dateAdded', valueType: 'date', operator: 'smallerThan', value: new Date('2026-01-10T00:00:00Z') };
  assert.deepEqual(names(await backend.searchFiles(before, 'name', OrderDirection.Asc)), ['blank.gif']);
  await rejectsWith(
    backend.searchFiles({ key: 'size', valueType: 'number', operator: 'startsWith', value: 1 }, 'name', OrderDirection.Asc),
    'INVALID',
  );
});

test('locations and saved searches', async (t) => {
  const { tmp, backend } = await setup(t);
  const inside = path.join(tmp.folder, 'Pictures');
  fs.mkdirSync(inside);
  const outside = path.join(tmp.root, 'elsewhere');
  fs.mkdirSync(outside);
  await backend.createLocation({
    id: 'app-pictures',
    path: inside,
    dateAdded: new Date(1),
    subLocations: [{ name: 'raw', isExcluded: true, subLocations: [] }],
    index: 0,
  });
  await backend.createLocation({ id: 'app-elsewhere', path: outside, dateAdded: new Date(2), subLocations: [], index: 1 });
  let locations = await backend.fetchLocations();
  assert.equal(locations.length, 2);
  const [pictures, elsewhere] = locations;
  assert.notEqual(pictures.id, 'app-pictures', 'a location inside the library has the id its path gives');
  assert.equal(pictures.path, path.join(fs.realpathSync(tmp.folder), 'Pictures'));
  assert.deepEqual(pictures.subLocations, [{ name: 'raw', isExcluded: true, subLocations: [], tags: [] }]);
  assert.equal(elsewhere.id, 'app-elsewhere', 'one outside keeps the app\'s id');
  assert.equal(elsewhere.path, outside, 'and this computer\'s path');
  assert.ok(pictures.dateAdded instanceof Date);
  // The app's id keeps working for the location it created this session.
  await backend.createFilesFromPath(inside, [fileDto('app-pictures', inside, 'x.jpg')]);
  assert.equal((await backend.fetchFiles('name', OrderDirection.Asc))[0].locationId, pictures.id);

  await backend.saveLocation({ ...elsewhere, index: 0, subLocations: [{ name: 'tmp', isExcluded: true, subLocations: [] }] });
  await backend.saveLocation({ ...pictures, index: 1, subLocations: [] });
  locations = await backend.fetchLocations();
  assert.deepEqual(locations.map((l) => l.id), [elsewhere.id, pictures.id], 'ordered by index');
  assert.deepEqual(locations[0].subLocations.map((s) => s.name), ['tmp']);
  assert.deepEqual(locations[1].subLocations, []);
  await backend.removeLocation(pictures.id);
  assert.deepEqual(await backend.countFiles(), [0, 0], 'a removed location takes its files');

  const criteria = [{ key: 'dateAdded', valueType: 'date', operator: 'equals', value: new Date('2026-01-10T00:00:00Z') }];
  await backend.createSearch({ id: 's1', name: 'That day', criteria, matchAny: false, index: 1 });
  await backend.createSearch({ id: 's2', name: 'Untagged', criteria: [{ key: 'tags', valueType: 'array', operator: 'contains', value: [] }], index: 0 });
  let searches = await backend.fetchSearches();
  assert.deepEqual(searches.map((s) => s.id), ['s2', 's1']);
  assert.ok(searches[1].criteria[0].value instanceof Date, 'a date criterion reads back as a Date');
  assert.equal(searches[1].criteria[0].value.getTime(), Date.parse('2026-01-10T00:00:00Z'));
  await backend.saveSearch({ ...searches[1], name: 'Renamed', matchAny: true });
  await backend.removeSearch('s2');
  searches = await backend.fetchSearches();
  assert.deepEqual(searches.map((s) => [s.id, s.name, s.matchAny]), [['s1', 'Renamed', true]]);
});

test('two computers: tree moves, tags and clear() reach the other one', async (t) => {
  const tmp = tempRoot();
  t.after(tmp.cleanup);
  const libA = await Library.create({ folder: tmp.folder, stateDir: tmp.stateDir('a'), deviceName: 'A' });
  t.after(() => libA.close());
  await libA.syncOnce();
  const libB = await Library.join({ folder: tmp.folder, stateDir: tmp.stateDir('b'), deviceName: 'B' });
  t.after(() => libB.close());
  let remote = 0;
  const a = await SyncBackend.init(libA);
  const b = await SyncBackend.init(libB, { onRemoteChange: () => remote++ });
  t.after(() => b.dispose());
  await a.createLocation({ id: 'la', path: tmp.folder, dateAdded: new Date(), subLocations: [], index: 0 });
  await b.createLocation({ id: 'lb', path: tmp.folder, dateAdded: new Date(), subLocations: [], index: 0 });
  await a.createTag(tagDto('animals', 'Animals'));
  await a.createTag(tagDto('cats', 'Cats'));
  await a.saveTag(tagDto('animals', 'Animals', { subTags: ['cats'] }));
  await a.createFilesFromPath(tmp.folder, [fileDto('la', tmp.folder, 'x.jpg', { tags: ['cats'] })]);
  // B indexes the same folder with its own app ids: one file, one location.
  await b.createFilesFromPath(tmp.folder, [fileDto('lb', tmp.folder, 'x.jpg')]);

  const sync = async () => {
    await libA.syncOnce();
    await libB.syncOnce();
    await libA.syncOnce();
  };
  const converged = async () => (await libA.export()) === (await libB.export());
  await until('the two computers to converge', async () => {
    await sync();
    return converged();
  });
  const files = await b.fetchFiles('name', OrderDirection.Asc);
  assert.equal(files.length, 1);
  assert.deepEqual(files[0].tags, ['cats']);
  assert.equal((await b.fetchLocations()).length, 1);
  const tagsB = Object.fromEntries((await b.fetchTags()).map((x) => [x.id, x]));
  assert.deepEqual(tagsB.animals.subTags, ['cats']);
  assert.ok(remote > 0, 'onRemoteChange heard the applied edits');

  // A moves Cats to the root; B recolours it meanwhile: both survive.
  await a.saveTag(tagDto(ROOT_TAG_ID, 'Root', { subTags: ['animals', 'cats'] }));
  await b.saveTag({ ...tagsB.cats, color: 'orange' });
  await until('the move and the colour on both', async () => {
    await sync();
    const cats = (await a.fetchTags()).find((x) => x.id === 'cats');
    return (await converged()) && cats.color === 'orange';
  });
  assert.deepEqual((await b.fetchTags()).find((x) => x.id === ROOT_TAG_ID).subTags, ['animals', 'cats']);

  await a.clear();
  await until('clear() to reach B', async () => {
    await sync();
    return (await b.countFiles())[0] === 0 && (await b.fetchTags()).length === 1;
  });
  assert.deepEqual((await b.fetchLocations()), []);
});

#!/usr/bin/env node
// Two devices in one process tag pictures and converge through one shared folder, with the
// sync loop running on each and its events printed.
//
//   (cd crates/node && npm run build)   # once: builds and copies the addon
//   node examples/node/two-devices.js
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Library } = require('../../crates/node');

async function main() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'onefolder-example-'));
  const folder = path.join(root, 'Pictures'); // what Dropbox / Syncthing would share
  fs.mkdirSync(folder);
  const fast = { debounceMs: 50, pollIntervalMs: 200 };
  try {
    const laptop = await Library.create({ folder, stateDir: path.join(root, 'laptop'), deviceName: 'laptop', ...fast });
    await laptop.syncOnce(); // publishes library.json and the first segment
    const desktop = await Library.join({ folder, stateDir: path.join(root, 'desktop'), deviceName: 'desktop', ...fast });
    for (const [name, lib] of [['laptop', laptop], ['desktop', desktop]]) {
      lib.onEvent((e) => {
        if (e.event !== 'edited') console.log(`  [${name}] ${e.event}`, JSON.stringify(e));
      });
      await lib.startSync();
    }

    console.log('laptop tags cats.jpg; desktop tags dogs.jpg, both create "Animals"');
    const locLaptop = await laptop.addLocation('Pictures', '');
    const locDesktop = await desktop.addLocation('Pictures', '');
    const cats = await laptop.createTag('Cats', await laptop.createTag('Animals'), 'orange');
    const dogs = await desktop.createTag('Dogs', await desktop.createTag('Animals'));
    await laptop.assign(await laptop.upsertFile(locLaptop, 'cats.jpg', { size: 1200 }), cats);
    await desktop.assign(await desktop.upsertFile(locDesktop, 'dogs.jpg', { size: 3400 }), dogs);

    const deadline = Date.now() + 20000;
    for (;;) {
      const [a, b] = [await laptop.export(), await desktop.export()];
      if (a === b && Object.keys(JSON.parse(a).files).length === 2) break;
      if (Date.now() > deadline) throw new Error('the devices did not converge in 20 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const tags = await desktop.tags();
    const name = (id) => tags.find((t) => t.id === id)?.name;
    console.log('converged; on the desktop:');
    for (const f of await desktop.files()) console.log(`  ${f.path}: ${f.tags.map(name).join(', ')}`);
    const animals = tags.find((t) => t.name === 'Animals' && !t.parent);
    const under = await desktop.filesWithTag(animals.id, true);
    console.log(`  files under Animals: ${under.map((f) => f.path).join(', ')}`);

    await laptop.close(); // stops the loop after its final flush
    await desktop.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`error (${e.code}): ${e.message}`);
  process.exit(1);
});

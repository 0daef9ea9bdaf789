// Shared by the tests (kept outside test/: `node --test test/` runs every .js file there): temporary
// library folders and state directories, waiting with a deadline.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** A temporary root with `lib/` (the shared library folder); removed by `cleanup()`. */
function tempRoot() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'onefolder-node-'));
  const folder = path.join(root, 'lib');
  fs.mkdirSync(folder);
  return {
    root,
    folder,
    stateDir: (name) => path.join(root, `state-${name}`),
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/** Calls `check` until it returns a truthy value, or fails after `ms`. */
async function until(what, check, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Rejects unless `promise` rejects with an Error whose `code` is `code`. */
async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (e) {
    if (!(e instanceof Error)) throw new Error(`rejected with a non-Error: ${e}`);
    if (e.code !== code) throw new Error(`expected code ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  throw new Error(`expected a rejection with code ${code}, but it resolved`);
}

module.exports = { tempRoot, until, rejectsWith };

// OneFolder Sync for Node.js. Loads the addon built from this crate (`npm run build` copies
// it to ./onefolder.node); nothing is downloaded.
'use strict';
const path = require('node:path');

let native;
try {
  native = require(path.join(__dirname, 'onefolder.node'));
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND') {
    throw new Error(
      `the OneFolder Sync addon is not built: run \`npm run build\` in ${__dirname} (${e.message})`,
    );
  }
  throw e;
}

module.exports = { Library: native.Library };

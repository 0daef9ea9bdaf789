// Copies the addon cargo built (target/<profile>/libonefolder_node.so, .dylib or
// onefolder_node.dll) to crates/node/onefolder.node, where index.js loads it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const profile = process.argv.includes('--release') ? 'release' : 'debug';
const here = path.resolve(__dirname, '..');
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(process.env.CARGO_TARGET_DIR)
  : path.resolve(here, '..', '..', 'target');
const names = {
  linux: 'libonefolder_node.so',
  darwin: 'libonefolder_node.dylib',
  win32: 'onefolder_node.dll',
};
const name = names[process.platform] || 'libonefolder_node.so';
const from = path.join(targetDir, profile, name);
const to = path.join(here, 'onefolder.node');
if (!fs.existsSync(from)) {
  console.error(`${from} does not exist: run \`cargo build -p onefolder-node${profile === 'release' ? ' --release' : ''}\` first`);
  process.exit(1);
}
// Copy to a temporary name and rename, so a running process never sees a half-written file.
const tmp = `${to}.tmp-${process.pid}`;
fs.copyFileSync(from, tmp);
fs.renameSync(tmp, to);
console.log(`copied ${path.relative(process.cwd(), from)} -> ${path.relative(process.cwd(), to)}`);

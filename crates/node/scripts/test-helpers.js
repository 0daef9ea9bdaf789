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

/** The Python of the test servers' venv (`cargo xtask test-servers` installs it). */
function serversPython() {
  const venv = process.env.ONEFOLDER_SYNC_TEST_SERVERS || path.resolve(__dirname, '../../../target/test-servers/venv');
  const python = path.join(venv, 'bin', 'python');
  if (!fs.existsSync(python)) {
    throw new Error(`the S3 and WebDAV test servers are not installed (${python} is missing): run \`cargo xtask test-servers\``);
  }
  return python;
}

/**
 * Starts a test server (`s3`: moto; `webdav ROOT USER PASSWORD`: wsgidav) on 127.0.0.1 with the
 * launcher the Rust tests use; resolves with `{ port, endpoint, stop }`. It also exits when this
 * process ends (its stdin closes).
 */
async function startServer(kind, ...args) {
  const { spawn } = require('node:child_process');
  const launcher = fs.readFileSync(path.resolve(__dirname, '../../../adapters/transport-opendal/src/launcher.py'), 'utf8');
  const child = spawn(serversPython(), ['-c', launcher, kind, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the ${kind} server printed no port in 90 s:\n${stderr}`)), 90_000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n');
      if (line.length > 1) {
        clearTimeout(timer);
        const port = Number(line[0].trim());
        if (Number.isInteger(port) && port > 0) resolve(port);
        else reject(new Error(`the ${kind} server printed ${JSON.stringify(line[0])} instead of its port`));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the ${kind} server exited (${code}):\n${stderr}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  await until(`the ${kind} server on port ${port} to answer`, async () => {
    try {
      await fetch(endpoint, { method: 'OPTIONS' });
      return true;
    } catch {
      return false;
    }
  }, 90_000);
  return {
    port,
    endpoint,
    stop: () => {
      child.stdin.end();
      child.kill();
    },
  };
}

module.exports = { tempRoot, until, rejectsWith, startServer };

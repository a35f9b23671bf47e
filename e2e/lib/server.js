// Starts the real `switchboard` binary on port 0 and reads its JSON `listening` line.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The binary `cargo test` builds. */
export const BINARY = path.join(ROOT, 'target', 'debug', 'switchboard');

/**
 * A running server.
 * @typedef {object} Server
 * @property {string} httpUrl        `http://127.0.0.1:PORT`
 * @property {string} signalingAddr  `127.0.0.1:PORT`
 * @property {string[]} output       every line it printed
 * @property {() => Promise<void>} stop
 * @property {(body: object) => Promise<any>} token   `POST /api/auth/token`, asserting 200
 */

/**
 * Starts the binary with the test environment plus `env`.
 * @param {Record<string, string>} [env]
 * @returns {Promise<Server>}
 */
export async function startServer(env = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: run \`cargo build\` (scripts/test.sh does)`);
  }
  const child = spawn(BINARY, [], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOST: '127.0.0.1',
      PORT: '0',
      SIGNALING_PORT: '0',
      LOG_FORMAT: 'json',
      RUST_LOG: 'info',
      JWT_SECRET: 'switchboard-e2e-test-secret-0123456789abcdef0123',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  let exited = false;
  child.on('exit', () => { exited = true; });
  createInterface({ input: child.stderr }).on('line', (l) => output.push(l));
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 10 s:\n${output.join('\n')}`)), 10_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      let v;
      try { v = JSON.parse(line); } catch { return; }
      if (v?.fields?.message === 'listening') {
        clearTimeout(timer);
        resolve(v.fields);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`switchboard exited (${code}) before listening:\n${output.join('\n')}`));
    });
  });
  const fields = await listening;
  const httpUrl = `http://${fields.http_addr}`;
  return {
    httpUrl,
    signalingAddr: fields.signaling_addr,
    output,
    async stop() {
      if (exited) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    },
    async token(body) {
      const res = await fetch(`${httpUrl}/api/auth/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = await res.json();
      if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
  };
}

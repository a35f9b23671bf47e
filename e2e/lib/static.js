// The y-webrtc test page: yjs + y-webrtc bundled with esbuild at test setup, served from a
// throwaway HTTP server on loopback.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const PAGES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'pages');

/** Bundles pages/yjs-entry.js for the browser. @returns {Promise<string>} */
export async function bundleYjs() {
  const result = await esbuild.build({
    entryPoints: [path.join(PAGES, 'yjs-entry.js')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    inject: [path.join(PAGES, 'process-shim.js')],
    define: { global: 'globalThis' },
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}

/**
 * Serves `/yjs.html` and `/yjs-bundle.js` on 127.0.0.1:0.
 * @returns {Promise<{url: string, close: () => Promise<void>}>}
 */
export async function serveYjsPage() {
  const [html, bundle] = await Promise.all([
    readFile(path.join(PAGES, 'yjs.html'), 'utf8'),
    bundleYjs(),
  ]);
  const server = createServer((req, res) => {
    const routes = {
      '/yjs.html': ['text/html; charset=utf-8', html],
      '/yjs-bundle.js': ['text/javascript; charset=utf-8', bundle],
    };
    const hit = routes[new URL(req.url ?? '/', 'http://x').pathname];
    if (!hit) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': hit[0] }).end(hit[1]);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

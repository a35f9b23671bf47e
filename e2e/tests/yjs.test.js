// The unmodified `y-webrtc` provider (bundled from npm with yjs) syncing a Y.Text between
// real browsers through Switchboard's `/yjs` endpoint.
//
// Every simulated user has its own browser context: pages of one context share a
// BroadcastChannel, over which y-webrtc syncs without any signaling server at all.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.js';
import { isolatedPage, launch } from '../lib/browser.js';
import { serveYjsPage } from '../lib/static.js';

/** @type {import('playwright-core').Browser} */
let browser;
/** @type {{url: string, close: () => Promise<void>}} */
let pages;

before(async () => {
  [browser, pages] = await Promise.all([launch(), serveYjsPage()]);
});

after(async () => {
  await browser?.close();
  await pages?.close();
});

/**
 * A y-webrtc editor on its own page, for the provider room `room`, signaling through
 * `/yjs` with a token for `tokenRoom`.
 */
async function editor(server, signalingAddr, user, room, tokenRoom = room) {
  const tok = await server.token({ userId: user, roomId: tokenRoom, userName: user });
  const u = await isolatedPage(browser);
  await u.page.goto(`${pages.url}/yjs.html`);
  await u.page.waitForFunction(() => typeof window.startYjs === 'function');
  const url = `ws://${signalingAddr}/yjs?token=${encodeURIComponent(tok.token)}`;
  await u.page.evaluate((o) => window.startYjs(o), { url, room, iceServers: tok.iceServers ?? [] });
  return u;
}

/** @param {import('playwright-core').Page} page @param {string} text */
const hasText = (page, text, timeout) =>
  page.waitForFunction((t) => window.yText() === t, text, { timeout });

test('two y-webrtc pages sync a Y.Text both ways through /yjs; another room gets nothing', async (t) => {
  const server = await startServer();
  try {
    const room = `yjs-doc-${Date.now()}`;
    const started = Date.now();
    const ada = await editor(server, server.signalingAddr, 'ada', room);
    const bob = await editor(server, server.signalingAddr, 'bob', room);
    // Same provider room, but a token for another room: its subscribe is ignored.
    const eve = await editor(server, server.signalingAddr, 'eve', room, `${room}-other`);

    await ada.page.evaluate(() => window.yAppend('Hello from Ada. '));
    try {
      await hasText(bob.page, 'Hello from Ada. ', 15_000);
    } catch (err) {
      throw new Error(`Bob did not receive Ada's text: ${err}\n${server.output.slice(-20).join('\n')}\nAda: ${ada.logs.join('\n')}\nBob: ${bob.logs.join('\n')}`);
    }
    t.diagnostic(`first sync ${Date.now() - started} ms after the first editor opened`);
    const t0 = Date.now();
    await bob.page.evaluate(() => window.yAppend('Bob was here.'));
    await hasText(ada.page, 'Hello from Ada. Bob was here.', 5_000);
    t.diagnostic(`Bob → Ada ${Date.now() - t0} ms`);
    assert.equal(await ada.page.evaluate(() => window.yPeers()), 1);

    // Eve's signaling connection is up, yet she never meets the others.
    assert.equal(await eve.page.evaluate(() => window.ySignalingConnected()), true);
    await ada.page.evaluate(() => window.yAppend('!'));
    await hasText(bob.page, 'Hello from Ada. Bob was here.!', 5_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await eve.page.evaluate(() => window.yText()), '');
    assert.equal(await eve.page.evaluate(() => window.yPeers()), 0);

    // The server counted the fan-out and the refused topic.
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
    const value = (series) => Number(metrics.split('\n').find((l) => l.startsWith(series))?.split(' ').pop());
    assert.ok(value('switchboard_messages_relayed_total{type="yjs-publish"}') > 0, metrics);
    assert.ok(value('switchboard_messages_rejected_total{reason="room_mismatch"}') > 0, metrics);

    for (const u of [ada, bob, eve]) await u.context.close();
  } finally {
    await server.stop();
  }
});

test('control: with the signaling server stopped the same pages do not sync', async () => {
  const server = await startServer();
  const room = `yjs-down-${Date.now()}`;
  // Tokens are still valid; only the server is gone.
  const signalingAddr = server.signalingAddr;
  const tokens = await Promise.all(['ada', 'bob'].map((u) => server.token({ userId: u, roomId: room })));
  await server.stop();
  const users = [];
  for (const tok of tokens) {
    const u = await isolatedPage(browser);
    await u.page.goto(`${pages.url}/yjs.html`);
    await u.page.waitForFunction(() => typeof window.startYjs === 'function');
    const url = `ws://${signalingAddr}/yjs?token=${encodeURIComponent(tok.token)}`;
    await u.page.evaluate((o) => window.startYjs(o), { url, room, iceServers: [] });
    users.push(u);
  }
  const [ada, bob] = users;
  await ada.page.evaluate(() => window.yAppend('nobody hears this'));
  await assert.rejects(hasText(bob.page, 'nobody hears this', 3_000), /Timeout/);
  for (const u of users) await u.context.close();
});

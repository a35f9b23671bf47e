// The demo page at `/` in two real browsers: they join one room through Switchboard,
// connect peer-to-peer, share text over the data channel, and see each other leave.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, startServer } from '../lib/server.js';
import { isolatedPage, launch } from '../lib/browser.js';

/** @type {import('../lib/server.js').Server} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  [server, browser] = await Promise.all([startServer(), launch()]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * Opens the demo in its own browser context and joins `room` as `name`.
 * @param {string} room @param {string} name @param {{password?: string, token?: string}} [opts]
 */
async function openDemo(room, name, opts = {}) {
  const user = await isolatedPage(browser);
  const { page } = user;
  await page.goto(`${server.httpUrl}/?room=${encodeURIComponent(room)}`);
  await page.fill('#name', name);
  if (opts.password) await page.fill('#password', opts.password);
  if (opts.token) {
    await page.click('text=Join with a token from your backend');
    await page.fill('#token', opts.token);
  }
  await page.click('#join');
  return user;
}

test('two pages connect peer-to-peer, share text and see each other leave', async (t) => {
  // A fixed name (every run has a fresh server) keeps the docs screenshot stable.
  const room = 'design-review';
  const started = Date.now();
  const ada = await openDemo(room, 'Ada');
  await ada.page.waitForSelector('#status[data-state="joined"]');
  const bob = await openDemo(room, 'Bob');
  await bob.page.waitForSelector('#status[data-state="joined"]');

  // Each side lists the other with an open direct link.
  const linkOpen = '#peers li:not(:first-child) .peer-detail[data-link="open"]';
  try {
    await Promise.all([
      ada.page.waitForSelector(linkOpen, { timeout: 15_000 }),
      bob.page.waitForSelector(linkOpen, { timeout: 15_000 }),
    ]);
  } catch (err) {
    throw new Error(`data channel did not open: ${err}\nAda: ${ada.logs.join('\n')}\nBob: ${bob.logs.join('\n')}`);
  }
  t.diagnostic(`data channel open ${Date.now() - started} ms after the first page opened`);

  // Presence and host: Ada joined first, so she is host on both pages.
  for (const { page } of [ada, bob]) {
    const rows = await page.$$eval('#peers li', (lis) =>
      lis.map((li) => ({ name: li.querySelector('.peer-name')?.textContent, host: !!li.querySelector('.badge.host') })));
    assert.equal(rows.length, 2, JSON.stringify(rows));
    assert.deepEqual(rows.find((r) => r.name === 'Ada'), { name: 'Ada', host: true });
    assert.deepEqual(rows.find((r) => r.name === 'Bob'), { name: 'Bob', host: false });
  }

  // Text typed in one page appears in the other within 2 s, both ways.
  const line1 = 'Hello from Ada: this text travels over a WebRTC data channel.';
  const t1 = Date.now();
  await ada.page.locator('#shared').pressSequentially(line1, { delay: 2 });
  await bob.page.waitForFunction((s) => document.querySelector('#shared').value === s, line1, { timeout: 2_000 });
  t.diagnostic(`Ada → Bob: ${Date.now() - t1} ms (typing included)`);
  const line2 = `${line1}\nAnd Bob answers through the same channel.`;
  const t2 = Date.now();
  await bob.page.fill('#shared', line2);
  await ada.page.waitForFunction((s) => document.querySelector('#shared').value === s, line2, { timeout: 2_000 });
  t.diagnostic(`Bob → Ada: ${Date.now() - t2} ms`);

  // The screenshot in the docs: two connected peers, taken here so it stays true.
  await mkdir(path.join(ROOT, 'docs'), { recursive: true });
  await ada.page.locator('#shared').blur();
  await ada.page.screenshot({ path: path.join(ROOT, 'docs', 'demo.png'), fullPage: true });

  // Bob closes his tab: Ada sees him leave.
  await bob.context.close();
  await ada.page.waitForFunction(() => document.querySelectorAll('#peers li').length === 1, null, { timeout: 5_000 });
  const log = await ada.page.textContent('#log');
  assert.match(log, /Bob left \(left\)/);
  assert.equal(await ada.page.textContent('#sync'), 'Waiting for another peer…');
  await ada.context.close();
});

/** An HS256 JWT signed with the test server's secret. */
function forgeToken(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = createHmac('sha256', 'switchboard-e2e-test-secret-0123456789abcdef0123').update(body).digest('base64url');
  return `${body}.${sig}`;
}

test('join errors are shown on the page: room full, wrong password, expired token', async () => {
  const post = (p, body) => fetch(`${server.httpUrl}${p}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const full = `full-${Date.now()}`;
  const locked = `locked-${Date.now()}`;
  assert.equal((await post('/api/rooms', { roomId: full, maxPeers: 1, hostId: 'h', hostName: 'Host' })).status, 201);
  assert.equal((await post('/api/rooms', { roomId: locked, password: 'open sesame', hostId: 'h', hostName: 'Host' })).status, 201);
  // The host takes the only place in the full room.
  const host = await openDemo(full, 'Host');
  // (The demo's own user id differs from `h`, so the host token from the API is not used:
  // the place is taken by this page.)
  await host.page.waitForSelector('#status[data-state="joined"]');

  const cases = [
    [await openDemo(full, 'Late'), 'ROOM_FULL', 'This room is full.'],
    [await openDemo(locked, 'Guess', { password: 'wrong' }), 'INVALID_PASSWORD', 'Wrong password'],
    [await openDemo(`exp-${Date.now()}`, 'Old', {
      token: forgeToken({ sub: 'old', room: 'x', iat: 1_600_000_000, exp: 1_600_000_600, jti: 'e2e' }),
    }), 'TOKEN_EXPIRED', 'expired'],
  ];
  for (const [user, code, text] of cases) {
    const box = await user.page.waitForSelector(`#error[data-code="${code}"]`, { timeout: 5_000 });
    assert.ok(await box.isVisible(), code);
    assert.match(await box.textContent(), new RegExp(text));
    // The form is back so the person can correct it.
    assert.ok(await user.page.isVisible('#join-form'));
    await user.context.close();
  }
  await host.context.close();
});

// Interop checks of a Mles server with the WebSocket of headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core).
//
//   node chromium.mjs URL
//
// URL is wss://127.0.0.1:PORT/ or ws://127.0.0.1:PORT/. The page is served by
// a tiny HTTP server of this script on 127.0.0.1 (a loopback origin, so no
// private-network rule stands between the page and the server). In the page,
// two `new WebSocket(url, 'mles-websocket')` join one channel and exchange a
// text and a binary (ArrayBuffer) message each way.
//
// Each passed check prints "ok NAME"; the last stdout line is a JSON summary
// {"client":"chromium","passed":[...],"failed":null|"..."}. Exit status 0
// only when every check passed.
//
//   node chromium.mjs --status http://127.0.0.1:PORT/
//
// loads the admin status page of mles --admin instead, waits until it has
// read /varz twice and drawn its charts, fails on any console error, page
// error or failed request, and adds the figures the page shows (the text of
// its data-figure elements) to the summary as "figures".

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const TOTAL_MS = 80000; // bound of the whole run (browser start included)
const LAUNCH_MS = 40000;
const PAGE_MS = 20000; // bound of the in-page checks

const statusURL = process.argv[2] === '--status' ? process.argv[3] : null;
const url = statusURL ?? process.argv[2];
if (!url || !(statusURL ? /^https?:\/\//.test(url) : /^wss?:\/\//.test(url))) {
  console.error('usage: node chromium.mjs wss://127.0.0.1:PORT/ [--site https://127.0.0.1:PORT/] | --status http://127.0.0.1:PORT/');
  process.exit(2);
}
// --site PAGE: instead of the checks below, two pages load PAGE from the
// Mles server's own static site (-w) and each opens a WebSocket to the same
// origin; they exchange a message through one channel.
const siteURL = process.argv[3] === '--site' ? process.argv[4] : null;
const run = crypto.randomBytes(6).toString('hex');
const passed = [];
let browserVersion = null;
let context = null;
let pageServer = null;
let userDataDir = null;
let figures = null; // --status: what the status page shows

async function cleanup() {
  if (context) await context.close().catch(() => {});
  context = null;
  if (pageServer) pageServer.close();
  pageServer = null;
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  userDataDir = null;
}

let finished = false;
async function finish(failed) {
  if (finished) return;
  finished = true;
  await cleanup();
  console.log(JSON.stringify({ client: 'chromium', version: browserVersion, url, passed, failed, ...(figures ? { figures } : {}) }));
  process.exit(failed ? 1 : 0);
}

setTimeout(() => {
  console.error(`FAIL: whole run exceeded ${TOTAL_MS} ms`);
  finish(`timeout after ${TOTAL_MS} ms`);
}, TOTAL_MS).unref();

// pageChecks runs inside the page. It returns the names of the passed
// checks or throws with the reason.
async function pageChecks({ url, run, stepMs }) {
  const PROTO = 'mles-websocket';
  const channel = `chromium-${run}`;
  const passed = [];
  const assert = (cond, msg) => {
    if (!cond) throw new Error(msg);
  };
  const show = (m) => {
    if (!m) return String(m);
    if (typeof m.data === 'string') return `text ${JSON.stringify(m.data).slice(0, 120)}`;
    if (m.data instanceof ArrayBuffer) return `ArrayBuffer <${m.data.byteLength} bytes>`;
    return `${Object.prototype.toString.call(m.data)}`;
  };

  // Every delivery goes to the client's queue; waiters are woken and look
  // at the queues again, so one wait may watch several clients.
  let wakers = [];
  const wake = () => {
    const ws = wakers;
    wakers = [];
    for (const w of ws) w();
  };

  function open(uid) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, PROTO);
      ws.binaryType = 'arraybuffer';
      const c = { uid, ws, queue: [], closeInfo: null };
      ws.onmessage = (e) => {
        c.queue.push({ data: e.data });
        wake();
      };
      ws.onopen = () => resolve(c);
      ws.onerror = () => {
        if (ws.readyState !== WebSocket.OPEN) reject(new Error(`${uid}: WebSocket error before open`));
      };
      ws.onclose = (e) => {
        c.closeInfo = { code: e.code, reason: e.reason, wasClean: e.wasClean };
        reject(new Error(`${uid}: closed before open: ${e.code} ${e.reason}`));
        wake();
      };
    });
  }

  // until waits, at most stepMs, for cond() to return a value other than
  // undefined, and returns it.
  async function until(cond, what) {
    const deadline = Date.now() + stepMs;
    for (;;) {
      const v = cond();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${stepMs} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        wakers.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  function next(c, what) {
    return until(() => {
      if (c.queue.length) return c.queue.shift();
      if (c.closeInfo) throw new Error(`${c.uid}: closed (${c.closeInfo.code} ${c.closeInfo.reason}) before ${what}`);
      return undefined;
    }, `${c.uid}: ${what}`);
  }

  function closed(c, what) {
    return until(() => c.closeInfo ?? undefined, `${c.uid}: ${what}`);
  }

  const bytesEqual = (ab, u8) => {
    const v = new Uint8Array(ab);
    return v.length === u8.length && v.every((x, i) => x === u8[i]);
  };

  async function expectText(c, want, what) {
    const m = await next(c, what);
    assert(typeof m.data === 'string' && m.data === want, `${c.uid}: ${what}: got ${show(m)}, want text ${JSON.stringify(want)}`);
  }

  async function expectBinary(c, want, what) {
    const m = await next(c, what);
    assert(m.data instanceof ArrayBuffer && bytesEqual(m.data, want), `${c.uid}: ${what}: got ${show(m)}, want ArrayBuffer <${want.length} bytes>`);
  }

  function isJoin(m, uid) {
    if (typeof m.data !== 'string') return false;
    try {
      const j = JSON.parse(m.data);
      return j.uid === uid && j.channel === channel && Object.keys(j).length === 2;
    } catch {
      return false;
    }
  }

  const alice = `alice-${run}`;
  const bob = `bob-${run}`;
  const openWithin = (uid) =>
    Promise.race([open(uid), new Promise((_, reject) => setTimeout(() => reject(new Error(`${uid}: not open within ${stepMs} ms`)), stepMs))]);
  const a = await openWithin(alice);
  const b = await openWithin(bob);
  for (const c of [a, b]) {
    assert(c.ws.protocol === PROTO, `${c.uid}: ws.protocol is ${JSON.stringify(c.ws.protocol)}, want ${PROTO}`);
    assert(c.ws.extensions === '', `${c.uid}: ws.extensions is ${JSON.stringify(c.ws.extensions)}, want none`);
  }
  passed.push('protocol');

  // Join. The page has no ping to learn when the server processed a
  // header, so both send theirs and wait: the later joiner's first delivery
  // is the earlier one's join frame (history). Once it is there, both are
  // members.
  a.ws.send(JSON.stringify({ uid: alice, channel }));
  b.ws.send(JSON.stringify({ uid: bob, channel }));
  const later = await until(() => {
    for (const c of [a, b]) {
      if (c.closeInfo) throw new Error(`${c.uid}: closed (${c.closeInfo.code} ${c.closeInfo.reason}) after its header`);
    }
    return a.queue.length ? a : b.queue.length ? b : undefined;
  }, 'the later joiner to receive the join frame of the earlier one');
  const earlier = later === a ? b : a;
  const first = later.queue.shift();
  assert(isJoin(first, earlier.uid), `${later.uid}: first delivery ${show(first)}, want the join frame of ${earlier.uid}`);
  passed.push('join-history');

  // Text and binary both ways.
  const textA = `hello from ${alice} in Chromium: grüße κόσμε 🙂`;
  const binA = new Uint8Array(256 + 1000);
  for (let i = 0; i < 256; i++) binA[i] = i;
  crypto.getRandomValues(binA.subarray(256));
  const textB = `reply from ${bob}`;
  const binB = crypto.getRandomValues(new Uint8Array(30000));

  a.ws.send(textA);
  a.ws.send(binA.buffer);
  await expectText(b, textA, 'alice text');
  await expectBinary(b, binA, 'alice binary');
  passed.push('a-to-b');
  b.ws.send(textB);
  b.ws.send(binB);
  await expectText(a, textB, 'bob text (an echo of alice would come first)');
  await expectBinary(a, binB, 'bob binary');
  passed.push('b-to-a');
  const mark = `marker from ${alice}`;
  a.ws.send(mark);
  await expectText(b, mark, 'marker (an echo of bob would come first)');
  passed.push('no-echo');

  // Close echo: the close event carries the code the server sent back.
  a.ws.close(4001, 'bye');
  const ia = await closed(a, 'close echo 4001');
  assert(ia.code === 4001, `${alice}: close 4001 answered with ${ia.code} ${JSON.stringify(ia.reason)}`);
  b.ws.close(1000);
  const ib = await closed(b, 'close echo 1000');
  assert(ib.code === 1000, `${bob}: close 1000 answered with ${ib.code} ${JSON.stringify(ib.reason)}`);
  passed.push('close-echo');
  return passed;
}

// sitePeer runs in one of the two site pages: it joins the channel as me,
// sends one message and waits for the other page's, skipping stored join
// frames; its own message must not come back.
async function sitePeer({ url, run, me, other, stepMs }) {
  const ws = new WebSocket(url, 'mles-websocket');
  ws.binaryType = 'arraybuffer';
  const got = [];
  let wake = () => {};
  ws.onmessage = (e) => {
    got.push(e.data);
    wake();
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`${me}: the WebSocket failed to open`));
    setTimeout(() => reject(new Error(`${me}: not open after ${stepMs} ms`)), stepMs);
  });
  ws.send(JSON.stringify({ uid: me, channel: `site-${run}` }));
  ws.send(`hello from ${me}`);
  const deadline = Date.now() + stepMs;
  while (!got.includes(`hello from ${other}`)) {
    if (Date.now() > deadline) throw new Error(`${me}: nothing from ${other}; got ${JSON.stringify(got).slice(0, 200)}`);
    await new Promise((r) => {
      wake = r;
      setTimeout(r, 100);
    });
  }
  const result = { origin: location.origin, title: document.title, protocol: ws.protocol, echo: got.includes(`hello from ${me}`) };
  ws.close(1000);
  return result;
}

async function siteChecks(context) {
  const pages = [await context.newPage(), await context.newPage()];
  for (const p of pages) await p.goto(siteURL, { timeout: 20000 });
  const [a, b] = await Promise.all([
    pages[0].evaluate(sitePeer, { url, run, me: 'alice', other: 'bob', stepMs: 10000 }),
    pages[1].evaluate(sitePeer, { url, run, me: 'bob', other: 'alice', stepMs: 10000 }),
  ]);
  for (const [name, r] of [['alice', a], ['bob', b]]) {
    if (r.title !== 'mles site') throw new Error(`${name}: page title ${JSON.stringify(r.title)}, not the site's`);
    if (new URL(r.origin).host !== new URL(url).host) throw new Error(`${name}: page origin ${r.origin}, WebSocket ${url}`);
    if (r.protocol !== 'mles-websocket') throw new Error(`${name}: subprotocol ${JSON.stringify(r.protocol)}`);
    if (r.echo) throw new Error(`${name}: got its own message back`);
  }
  return ['site-page', 'same-origin', 'two-pages'];
}

// statusChecks loads the admin status page in page and waits until it has
// read varz at least twice and drawn both charts, without reloading; any
// console error, page error or failed request fails it. It sets figures.
async function statusChecks(page, consoleLines) {
  const failedRequests = [];
  page.on('requestfailed', (r) => failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
  const resp = await page.goto(statusURL, { timeout: 20000 });
  if (!resp || resp.status() !== 200) throw new Error(`status page: HTTP ${resp?.status()}`);
  if ((await page.title()) !== 'mles status') throw new Error(`status page title ${JSON.stringify(await page.title())}`);
  await page.waitForFunction(() => document.body.dataset.samples === '1', null, { timeout: 10000 });
  await page.evaluate(() => {
    window.mlesLoaded = true; // gone if the page reloads instead of refreshing in place
  });
  await page.waitForFunction(
    () =>
      Number(document.body.dataset.samples) >= 2 &&
      document.querySelector('#chart-deliveries polyline').getAttribute('points').trim() !== '' &&
      document.querySelector('#chart-connections polyline').getAttribute('points').trim() !== '',
    null,
    { timeout: 15000 },
  );
  const shown = await page.evaluate(() => {
    const f = {};
    for (const el of document.querySelectorAll('[data-figure]')) f[el.dataset.figure] = el.textContent;
    const points = (id) => document.querySelector(`#${id} polyline`).getAttribute('points').trim().split(/\s+/).length;
    return {
      figures: f,
      inPlace: window.mlesLoaded === true,
      samples: Number(document.body.dataset.samples),
      points: { deliveries: points('chart-deliveries'), connections: points('chart-connections') },
      error: document.getElementById('error').textContent,
      reactors: document.querySelectorAll('#reactors tbody tr').length,
    };
  });
  if (!shown.inPlace) throw new Error('the status page reloaded instead of refreshing in place');
  if (shown.error) throw new Error(`the status page shows an error: ${shown.error}`);
  const errors = consoleLines.filter((l) => l.startsWith('error:') || l.startsWith('pageerror:'));
  if (errors.length || failedRequests.length) throw new Error(`console errors: ${JSON.stringify([...errors, ...failedRequests])}`);
  figures = { ...shown.figures, samples: String(shown.samples), reactor_rows: String(shown.reactors),
    chart_points_deliveries: String(shown.points.deliveries), chart_points_connections: String(shown.points.connections) };
  return ['status-page', 'refreshed-in-place', 'charts', 'no-console-errors'];
}

async function main() {
  pageServer = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end('<!doctype html><meta charset="utf-8"><title>mles interop</title><p>mles interop</p>');
  });
  await new Promise((resolve, reject) => {
    pageServer.once('error', reject);
    pageServer.listen(0, '127.0.0.1', resolve);
  });
  const pageURL = `http://127.0.0.1:${pageServer.address().port}/`;

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mles-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: LAUNCH_MS,
    ignoreHTTPSErrors: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--ignore-certificate-errors',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(pageURL, { timeout: 20000 });
  browserVersion = await page.evaluate(() => navigator.userAgent.match(/Chrom(e|ium)\/[\d.]+/)?.[0] ?? navigator.userAgent);
  passed.push('launch');
  console.log(`ok launch ${browserVersion ?? ''}`.trim());
  try {
    const got = statusURL
      ? await statusChecks(page, consoleLines)
      : siteURL
        ? await siteChecks(context)
        : await page.evaluate(pageChecks, { url, run, stepMs: 5000 });
    for (const name of got) {
      passed.push(name);
      console.log(`ok ${name}`);
    }
  } catch (e) {
    if (consoleLines.length) console.error(`page console:\n  ${consoleLines.join('\n  ')}`);
    throw new Error(e.message.replace(/^page\.evaluate: (Error: )?/, ''));
  }
}

main().then(
  () => finish(null),
  (err) => {
    console.error(`FAIL: ${err.message}`);
    finish(err.message.split('\n')[0]);
  },
);

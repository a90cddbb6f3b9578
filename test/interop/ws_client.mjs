// Interop checks of a Mles server with the node `ws` 8 client.
//
//   node ws_client.mjs URL [--max-message N]
//
// URL is wss://127.0.0.1:PORT/ or ws://127.0.0.1:PORT/. Each passed check
// prints "ok NAME"; the last stdout line is a JSON summary
// {"client":"node-ws","passed":[...],"failed":null|"..."}. Exit status 0 only
// when every check passed.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { WebSocket } from 'ws';

const PROTO = 'mles-websocket';
const STEP_MS = 5000; // bound of every single wait
const TOTAL_MS = 40000; // bound of the whole run

const args = process.argv.slice(2);
const url = args[0];
if (!url || !/^wss?:\/\//.test(url)) {
  console.error('usage: node ws_client.mjs wss://127.0.0.1:PORT/ [--max-message N]');
  process.exit(2);
}
const mi = args.indexOf('--max-message');
const maxMessage = mi >= 0 ? Number(args[mi + 1]) : 0;

const run = crypto.randomBytes(6).toString('hex');
const channel = `node-ws-${run}`;
const passed = [];
const wsVersion = JSON.parse(fs.readFileSync(new URL('./node_modules/ws/package.json', import.meta.url), 'utf8')).version;
const tlsOpts = { rejectUnauthorized: false }; // the server's certificate is self-signed

function pass(name, detail) {
  passed.push(name);
  console.log(`ok ${name}${detail ? ' ' + detail : ''}`);
}

function finish(failed) {
  console.log(JSON.stringify({ client: 'node-ws', version: wsVersion, url, channel, passed, failed }));
  process.exit(failed ? 1 : 0);
}

setTimeout(() => {
  console.error(`FAIL: whole run exceeded ${TOTAL_MS} ms`);
  finish(`timeout after ${TOTAL_MS} ms`);
}, TOTAL_MS).unref();

function withTimeout(promise, what, ms = STEP_MS) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function show(m) {
  if (!m) return String(m);
  const s = m.type === 'text' ? JSON.stringify(m.data.toString('utf8')) : `<${m.data.length} bytes>`;
  return `${m.type} ${s.length > 120 ? s.slice(0, 120) + '...' : s}`;
}

// Client wraps one ws connection: queued deliveries, pongs and the close.
class Client {
  constructor(name, ws) {
    this.name = name;
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.pongs = [];
    this.pongWaiters = [];
    this.closeInfo = null;
    this.closeWaiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { type: isBinary ? 'binary' : 'text', data: Buffer.from(data) };
      const w = this.waiters.shift();
      if (w) w.resolve(m);
      else this.queue.push(m);
    });
    ws.on('pong', (data) => {
      const w = this.pongWaiters.shift();
      if (w) w.resolve(Buffer.from(data));
      else this.pongs.push(Buffer.from(data));
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      for (const w of [...this.waiters, ...this.pongWaiters]) {
        w.reject(new Error(`${this.name}: connection closed (${code} ${reason}) while waiting`));
      }
      this.waiters = [];
      this.pongWaiters = [];
      for (const w of this.closeWaiters) w.resolve(this.closeInfo);
      this.closeWaiters = [];
    });
    ws.on('error', (err) => {
      this.error = err;
    });
  }

  next(what) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(new Error(`${this.name}: closed (${this.closeInfo.code}) before ${what}`));
    return withTimeout(new Promise((resolve, reject) => this.waiters.push({ resolve, reject })), `${this.name}: ${what}`);
  }

  nextPong(what) {
    if (this.pongs.length) return Promise.resolve(this.pongs.shift());
    return withTimeout(new Promise((resolve, reject) => this.pongWaiters.push({ resolve, reject })), `${this.name}: ${what}`);
  }

  closed(what) {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return withTimeout(new Promise((resolve) => this.closeWaiters.push({ resolve })), `${this.name}: ${what}`);
  }

  send(type, data) {
    return new Promise((resolve, reject) =>
      this.ws.send(data, { binary: type === 'binary' }, (err) => (err ? reject(err) : resolve())),
    );
  }

  // expect asserts that the next delivery is exactly (type, bytes).
  async expect(type, data, what) {
    const m = await this.next(what);
    const want = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
    assert(
      m.type === type && m.data.equals(want),
      `${this.name}: ${what}: got ${show(m)}, want ${show({ type, data: want })}`,
    );
  }

  async expectJoin(uid, what) {
    const m = await this.next(what);
    assert(m.type === 'text', `${this.name}: ${what}: join frame must be text, got ${show(m)}`);
    let j;
    try {
      j = JSON.parse(m.data.toString('utf8'));
    } catch (e) {
      throw new Error(`${this.name}: ${what}: join frame is not JSON: ${show(m)}`);
    }
    assert(
      j.uid === uid && j.channel === channel && !('auth' in j) && Object.keys(j).length === 2,
      `${this.name}: ${what}: got join ${m.data.toString('utf8')}, want {"uid":"${uid}","channel":"${channel}"}`,
    );
  }
}

// open connects and resolves once the 101 arrived (or rejects with the reason).
function open(name, protocols, options = {}) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const ws = protocols === null ? new WebSocket(url, { ...tlsOpts, ...options }) : new WebSocket(url, protocols, { ...tlsOpts, ...options });
      const c = new Client(name, ws);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => reject(Object.assign(new Error(`${name}: HTTP ${res.statusCode}: ${body.trim()}`), { status: res.statusCode, body })));
        res.on('error', () => reject(Object.assign(new Error(`${name}: HTTP ${res.statusCode}`), { status: res.statusCode, body })));
      });
      ws.once('error', (err) => reject(new Error(`${name}: ${err.message}`)));
    }),
    `${name}: opening handshake`,
  );
}

// join opens a connection, sends the Mles header and waits until the server
// has processed it: a ping sent after the header is answered only after the
// header frame, so its pong means the join is done.
async function join(uid) {
  const c = await open(uid, PROTO);
  assert(c.ws.protocol === PROTO, `${uid}: negotiated subprotocol ${JSON.stringify(c.ws.protocol)}, want ${PROTO}`);
  assert(c.ws.extensions === '', `${uid}: server negotiated extensions ${JSON.stringify(c.ws.extensions)}, want none`);
  await c.send('text', JSON.stringify({ uid, channel }));
  const token = Buffer.from(`joined-${uid}`);
  c.ws.ping(token);
  const pong = await c.nextPong(`pong after the header of ${uid}`);
  assert(pong.equals(token), `${uid}: pong payload ${pong.toString()} != ping payload ${token.toString()}`);
  return c;
}

function randomBytes(n) {
  return crypto.randomBytes(n);
}

async function main() {
  const alice = `alice-${run}`;
  const bob = `bob-${run}`;
  const carol = `carol-${run}`;

  // Two members. alice's join is done (pong) before bob joins, so bob's
  // history is exactly alice's join frame.
  const a = await join(alice);
  pass('subprotocol', `protocol=${a.ws.protocol} extensions=none`);
  const b = await join(bob);
  await b.expectJoin(alice, "bob's history: alice's join frame");
  pass('join-history');

  // ping -> pong with the same payload, control frames not forwarded.
  const pingPayload = randomBytes(16);
  a.ws.ping(pingPayload);
  const pong = await a.nextPong('pong');
  assert(pong.equals(pingPayload), `pong payload ${pong.toString('hex')} != ping ${pingPayload.toString('hex')}`);
  const emptyPing = Buffer.alloc(0);
  a.ws.ping(emptyPing);
  assert((await a.nextPong('pong to empty ping')).length === 0, 'pong to an empty ping has a payload');
  pass('ping-pong');

  // Text and binary both ways, types and bytes intact.
  const textA = `hello from ${alice}: grüße, κόσμε, 🙂`;
  const binA = Buffer.concat([Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]), randomBytes(300)]);
  const textB = `reply from ${bob} \u0000 with a NUL`;
  const binB = randomBytes(40000); // 16-bit extended length
  await a.send('text', textA);
  await a.send('binary', binA);
  await b.expect('text', textA, 'alice text');
  await b.expect('binary', binA, 'alice binary');
  pass('a-to-b');
  await b.send('text', textB);
  await b.send('binary', binB);
  // alice's very next delivery is bob's text: an echo of her own two
  // messages would come first (one total order per channel).
  await a.expect('text', textB, 'bob text (an echo of alice would come first)');
  await a.expect('binary', binB, 'bob binary');
  pass('b-to-a');
  const markA = `marker from ${alice}`;
  await a.send('text', markA);
  await b.expect('text', markA, 'marker (an echo of bob would come first)');
  pass('no-echo');

  // A third member gets the history, oldest first: both join frames, then
  // every message with its type; then live traffic only.
  const c = await join(carol);
  await c.expectJoin(alice, 'history 1: alice join');
  await c.expectJoin(bob, 'history 2: bob join');
  await c.expect('text', textA, 'history 3');
  await c.expect('binary', binA, 'history 4');
  await c.expect('text', textB, 'history 5');
  await c.expect('binary', binB, 'history 6');
  await c.expect('text', markA, 'history 7');
  const live = `live after ${carol} joined`;
  await b.send('binary', Buffer.from(live));
  // alice's next delivery is this: carol's join is not delivered live.
  await a.expect('binary', Buffer.from(live), "live message (carol's join must not be delivered live)");
  await c.expect('binary', Buffer.from(live), 'live message after history');
  pass('history');

  // Close echo: the server echoes the client's code.
  const codes = [
    [a, 4001, 'bye from alice'],
    [b, 1000, ''],
    [c, 3000, 'registered'],
  ];
  for (const [cl, code, reason] of codes) {
    cl.ws.close(code, reason);
    const info = await cl.closed(`close echo ${code}`);
    assert(info.code === code, `${cl.name}: close ${code} echoed as ${info.code} (${info.reason})`);
  }
  pass('close-echo', '4001 1000 3000');

  // Over --max-message: closed with 1009.
  if (maxMessage > 0) {
    const big = await join(`big-${run}`);
    await big.send('binary', Buffer.alloc(maxMessage + 1, 0x5a)).catch(() => {});
    const info = await big.closed('close after an oversized message');
    assert(info.code === 1009, `oversized message closed with ${info.code} (${info.reason}), want 1009`);
    pass('too-big-1009');
  }

  // Subprotocol: a list that contains mles-websocket is accepted and the
  // 101 names only mles-websocket; without it there is no 101 but a 400.
  const listed = await open(`list-${run}`, ['chat', PROTO]);
  assert(listed.ws.protocol === PROTO, `offered [chat, ${PROTO}], got ${JSON.stringify(listed.ws.protocol)}`);
  listed.ws.close(1000);
  await listed.closed('close of the list client');
  pass('subprotocol-list');
  for (const [name, protos] of [
    ['none', null],
    ['other', 'chat'],
  ]) {
    let err;
    try {
      const cl = await open(`noproto-${name}`, protos);
      cl.ws.terminate();
    } catch (e) {
      err = e;
    }
    assert(err, `subprotocol ${name}: the server answered 101`);
    assert(err.status === 400, `subprotocol ${name}: want HTTP 400, got ${err.message}`);
    assert(err.body.trim().length > 0 && !err.body.trim().includes('\n'), `subprotocol ${name}: want a one-line reason, got ${JSON.stringify(err.body)}`);
  }
  pass('no-subprotocol-400');
}

main().then(
  () => finish(null),
  (err) => {
    console.error(`FAIL: ${err.message}`);
    finish(err.message);
  },
);

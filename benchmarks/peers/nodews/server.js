'use strict';
// Mles-speaking benchmark peer on node `ws` 8.x: one WebSocketServer, the
// first message of a connection is the Mles join frame
// {"uid":"...","channel":"..."}, every later message is sent to every other
// member of the channel with its type (text or binary) kept.
// Usage: node server.js -addr 127.0.0.1:PORT
const { WebSocketServer } = require('ws');

let addr = '127.0.0.1:9004';
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if ((a === '-addr' || a === '--addr') && i + 1 < process.argv.length) addr = process.argv[++i];
  else if (a.startsWith('-addr=') || a.startsWith('--addr=')) addr = a.slice(a.indexOf('=') + 1);
}
const sep = addr.lastIndexOf(':');
const host = addr.slice(0, sep) || '127.0.0.1';
const port = Number(addr.slice(sep + 1));

const channels = new Map(); // name -> Set<WebSocket>

const wss = new WebSocketServer({
  host,
  port,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 16 << 20,
  handleProtocols: (protocols) => (protocols.has('mles-websocket') ? 'mles-websocket' : false),
});

wss.on('connection', (ws) => {
  let members = null;
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (members === null) {
      let join;
      try {
        join = JSON.parse(data.toString());
      } catch (e) {
        ws.terminate();
        return;
      }
      if (!join || typeof join.channel !== 'string' || join.channel === '') {
        ws.terminate();
        return;
      }
      members = channels.get(join.channel);
      if (!members) {
        members = new Set();
        channels.set(join.channel, members);
      }
      members.add(ws);
      return;
    }
    const opts = { binary: isBinary };
    for (const m of members) {
      if (m !== ws && m.readyState === 1) m.send(data, opts);
    }
  });
  ws.on('close', () => {
    if (members) members.delete(ws);
  });
});

wss.on('listening', () => console.error(`nodews listening on ${host}:${port}`));
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

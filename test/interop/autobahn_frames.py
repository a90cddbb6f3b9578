#!/usr/bin/python3
"""Autobahn-testsuite-style frame cases against a Mles server, crafted with
autobahn-python's Twisted WebSocket client (sendFrame).

    /usr/bin/python3 autobahn_frames.py URL --max-message N

URL is wss://127.0.0.1:PORT/ or ws://127.0.0.1:PORT/; N is the server's
--max-message. Run it with Debian's /usr/bin/python3 (python3-autobahn,
python3-twisted). sendFrame(opcode, payload, fin, rsv, chopsize, ...) writes
frames as they are asked for, invalid ones included, the way the Autobahn
fuzzing client does; the numbers in brackets are the Autobahn testsuite
cases each check follows.

Each passed case prints "ok NAME"; the last stdout line is a JSON summary
{"client":"autobahn","passed":[...],"failed":null|"..."}. Exit status 0
only when every case passed.
"""

import json
import os
import sys
import time

from twisted.internet import defer, task
from twisted.internet import error as terror

import autobahn
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS

PROTO = "mles-websocket"
STEP = 5.0  # bound of every single wait, seconds
TOTAL = 60.0  # bound of the whole run
QUICK_CLOSE = 2.0  # "closed at once"

# Opcodes (RFC 6455 5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
# sendFrame's rsv is the 3-bit RSV field: RSV1 is 4, RSV2 is 2, RSV3 is 1.
RSV1, RSV2, RSV3 = 4, 2, 1

passed = []


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def ok(name, detail=""):
    passed.append(name)
    print(f"ok {name}{' ' + detail if detail else ''}", flush=True)


def show(msg):
    is_binary, payload = msg
    if is_binary:
        return f"binary <{len(payload)} bytes>"
    s = "text " + repr(payload)
    return s if len(s) <= 120 else s[:120] + "..."


class Probe(WebSocketClientProtocol):
    """One client connection: its deliveries, pongs and close, as Deferreds."""

    def __init__(self):
        super().__init__()
        self.messages = defer.DeferredQueue()
        self.pongs = defer.DeferredQueue()
        self.closed = defer.Deferred()

    def onOpen(self):
        d, self.factory.probe_opened = self.factory.probe_opened, None
        if d is not None:
            d.callback(self)

    def onMessage(self, payload, isBinary):
        self.messages.put((isBinary, payload))

    def onPong(self, payload):
        self.pongs.put(payload)

    def onClose(self, wasClean, code, reason):
        # remoteCloseCode is what the server put in its close frame (None
        # when it sent none); code is 1006 whenever the TCP close was not
        # after a full closing handshake.
        d, self.factory.probe_opened = self.factory.probe_opened, None
        if d is not None:
            d.errback(CheckFailed(f"{self.factory.probe_name}: closed before the opening handshake completed: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((self.remoteCloseCode, self.remoteCloseReason, wasClean))


class ProbeFactory(WebSocketClientFactory):
    protocol = Probe

    def clientConnectionFailed(self, connector, reason):
        d, self.probe_opened = self.probe_opened, None
        if d is not None:
            d.errback(CheckFailed(f"{self.probe_name}: connect failed: {reason.getErrorMessage()}"))


def within(d, what, secs=STEP):
    """d with a deadline; a timeout fails with what was being waited for."""
    from twisted.internet import reactor

    def timed_out(failure):
        failure.trap(defer.TimeoutError, terror.TimeoutError, defer.CancelledError)
        raise CheckFailed(f"timed out after {secs}s waiting for {what}")

    return d.addTimeout(secs, reactor).addErrback(timed_out)


class Suite:
    def __init__(self, url, max_message):
        self.url = url
        self.max_message = max_message
        self.run = os.urandom(6).hex()
        self.conns = []

    async def open(self, name):
        f = ProbeFactory(self.url, protocols=[PROTO])
        f.probe_name = name
        f.probe_opened = defer.Deferred()
        # No client pings, frames sent as given, drop timers short.
        f.setProtocolOptions(
            autoPingInterval=0,
            openHandshakeTimeout=STEP,
            closeHandshakeTimeout=STEP,
            serverConnectionDropTimeout=STEP,
            failByDrop=False,
        )
        d = f.probe_opened
        # connectWS uses a non-verifying TLS context for wss:// (the server's
        # certificate is self-signed).
        connectWS(f)
        p = await within(d, f"{name}: opening handshake")
        check(p.websocket_protocol_in_use == PROTO,
              f"{name}: subprotocol {p.websocket_protocol_in_use!r}, want {PROTO}")
        check(not p.websocket_extensions_in_use,
              f"{name}: server negotiated extensions {p.websocket_extensions_in_use!r}")
        p.test_name = name
        self.conns.append(p)
        return p

    async def join(self, uid, channel):
        """Opens, sends the header and waits for the pong to a ping sent after
        it: the server answers that ping only after it processed the header."""
        p = await self.open(uid)
        p.sendMessage(json.dumps({"uid": uid, "channel": channel}).encode(), isBinary=False)
        token = f"joined-{uid}".encode()
        p.sendPing(token)
        got = await within(p.pongs.get(), f"{uid}: pong after the header")
        check(got == token, f"{uid}: pong {got!r} != ping {token!r}")
        return p

    async def pair(self, case):
        """Two members a and b of a fresh channel; b's history is a's join."""
        channel = f"ab-{self.run}-{case}"
        a = await self.join(f"a-{case}", channel)
        b = await self.join(f"b-{case}", channel)
        await self.expect(b, (False, json.dumps({"uid": f"a-{case}", "channel": channel},
                                               separators=(",", ":")).encode()), "history: a's join frame")
        return a, b

    async def expect(self, p, want, what):
        got = await within(p.messages.get(), f"{p.test_name}: {what}")
        check(got == want, f"{p.test_name}: {what}: got {show(got)}, want {show(want)}")

    async def expect_close(self, p, code, what, started):
        got = await within(p.closed, f"{p.test_name}: close {code} after {what}")
        elapsed = time.monotonic() - started
        remote, reason, _ = got
        check(remote == code, f"{what}: server closed with {remote} {reason!r}, want {code}")
        check(elapsed < QUICK_CLOSE, f"{what}: close {code} took {elapsed:.2f}s, want at once")

    async def close(self, *ps):
        """Closes members cleanly (1000, echoed)."""
        for p in ps:
            p.sendClose(code=1000)
            remote, reason, _ = await within(p.closed, f"{p.test_name}: close echo 1000")
            check(remote == 1000, f"{p.test_name}: close 1000 echoed as {remote} {reason!r}")

    # --- delivery cases -------------------------------------------------

    async def chopped(self):
        """[1.1.x, 1.2.x with chopsize 1] a text and a binary frame written
        one octet per write (over TLS: one record per octet) arrive intact."""
        a, b = await self.pair("chop")
        text = "Hello, Mles! byte-at-a-time \u00fc\u20ac\U0001F600".encode()
        blob = bytes(range(256))
        a.sendFrame(opcode=TEXT, payload=text, chopsize=1)
        a.sendFrame(opcode=BINARY, payload=blob, chopsize=1)
        await self.expect(b, (False, text), "chopped text")
        await self.expect(b, (True, blob), "chopped binary")
        await self.close(a, b)
        ok("chopsize-1")

    async def ping_between_fragments(self):
        """[5.6, 5.7] a ping between the fragments of a text message gets
        its pong at once; the message arrives as one."""
        a, b = await self.pair("pingfrag")
        a.sendFrame(opcode=TEXT, payload=b"fragment1 ", fin=False)
        a.sendFrame(opcode=PING, payload=b"ping in the middle")
        a.sendFrame(opcode=CONT, payload=b"fragment2 ", fin=False)
        a.sendFrame(opcode=PONG, payload=b"unsolicited pong")  # ignored
        a.sendFrame(opcode=CONT, payload=b"fragment3", fin=True, chopsize=1)
        pong = await within(a.pongs.get(), "pong between fragments")
        check(pong == b"ping in the middle", f"pong payload {pong!r}")
        await self.expect(b, (False, b"fragment1 fragment2 fragment3"), "reassembled message")
        # b's next delivery must be the marker: no fragment, ping or pong
        # was delivered on its own.
        a.sendMessage(b"marker", isBinary=True)
        await self.expect(b, (True, b"marker"), "marker after the fragmented message")
        await self.close(a, b)
        ok("ping-between-fragments")

    async def utf8_split(self):
        """[6.2.3, 6.2.4] valid UTF-8 split inside a code point, across two
        fragments and across one-octet fragments, is delivered."""
        a, b = await self.pair("utf8split")
        kosme = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()  # κόσμε
        # The second code point (3 octets) starts at octet 2: split inside it.
        a.sendFrame(opcode=TEXT, payload=kosme[:3], fin=False)
        a.sendFrame(opcode=CONT, payload=kosme[3:], fin=True)
        await self.expect(b, (False, kosme), "text split inside a code point")
        emoji = "x\U0001F600y".encode()  # a 4-octet code point
        a.sendFrame(opcode=TEXT, payload=emoji[:1], fin=False)
        for i in range(1, len(emoji) - 1):
            a.sendFrame(opcode=CONT, payload=emoji[i:i + 1], fin=False)
        a.sendFrame(opcode=CONT, payload=emoji[-1:], fin=True)
        await self.expect(b, (False, emoji), "text in one-octet fragments")
        await self.close(a, b)
        ok("utf8-split-codepoint")

    async def max_size_ok(self):
        """[9.x] a binary message of exactly --max-message octets passes."""
        a, b = await self.pair("maxok")
        blob = os.urandom(self.max_message)
        a.sendFrame(opcode=BINARY, payload=blob)
        await self.expect(b, (True, blob), "message of --max-message octets")
        await self.close(a, b)
        ok("max-size-ok", f"{self.max_message} bytes")

    # --- close-code cases -------------------------------------------------

    async def close_case(self, name, code, send):
        channel = f"err-{self.run}-{name}"
        p = await self.join(f"u-{name}", channel)
        started = time.monotonic()
        send(p)
        await self.expect_close(p, code, name, started)
        ok(name, str(code))

    async def close_cases(self):
        m = self.max_message
        half = m // 2 + 1
        kosme_bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
        cases = [
            # [4.1.1] reserved non-control opcode 3; [4.2.1] reserved control opcode 11.
            ("opcode-3", 1002, lambda p: p.sendFrame(opcode=3, payload=b"reserved")),
            ("opcode-11", 1002, lambda p: p.sendFrame(opcode=11)),
            # [3.1-3.3] RSV bits without a negotiated extension.
            ("rsv1", 1002, lambda p: p.sendFrame(opcode=TEXT, payload=b"Hello, world!", rsv=RSV1)),
            ("rsv2-binary", 1002, lambda p: p.sendFrame(opcode=BINARY, payload=b"\x00\xff", rsv=RSV2)),
            # [2.5] ping payload of 126 octets; [5.1] fragmented ping.
            ("ping-126", 1002, lambda p: p.sendFrame(opcode=PING, payload=b"\xfe" * 126)),
            ("ping-fragmented", 1002, lambda p: p.sendFrame(opcode=PING, payload=b"frag", fin=False)),
            # [5.9] continuation with nothing to continue.
            ("continuation-first", 1002,
             lambda p: p.sendFrame(opcode=CONT, payload=b"non-continuation payload", fin=True)),
            # [5.18] a new text frame while a fragmented message is open.
            ("text-inside-fragments", 1002, lambda p: (
                p.sendFrame(opcode=TEXT, payload=b"fragment1", fin=False),
                p.sendFrame(opcode=TEXT, payload=b"fragment2", fin=True))),
            # [6.3.1] invalid UTF-8 (a surrogate) in one text frame.
            ("invalid-utf8", 1007, lambda p: p.sendFrame(opcode=TEXT, payload=kosme_bad)),
            # [6.4.x] invalid UTF-8 in a later fragment, one octet per write.
            ("invalid-utf8-fragmented", 1007, lambda p: (
                p.sendFrame(opcode=TEXT, payload=kosme_bad[:11], fin=False),
                p.sendFrame(opcode=CONT, payload=kosme_bad[11:], fin=True, chopsize=1))),
            # [9.x with a small limit] one frame over --max-message, declared in
            # the 64-bit length; the same total in two fragments.
            ("too-big", 1009, lambda p: p.sendFrame(opcode=BINARY, payload=b"\x5a" * (m + 1))),
            ("too-big-fragmented", 1009, lambda p: (
                p.sendFrame(opcode=BINARY, payload=b"\x01" * half, fin=False),
                p.sendFrame(opcode=CONT, payload=b"\x02" * half, fin=True))),
        ]
        for name, code, send in cases:
            await self.close_case(name, code, send)

    async def close_echo(self):
        """[7.7.x] a client close code is echoed."""
        channel = f"echo-{self.run}"
        for code in (1000, 1001, 3000, 4001):
            p = await self.join(f"echo-{code}", channel)
            if code == 1001:
                # sendClose refuses 1001 (a browser's "going away"): the raw call sends it.
                p.sendCloseFrame(code=code, reasonUtf8=b"going away")
            else:
                p.sendClose(code=code, reason="bye")
            remote, reason, _ = await within(p.closed, f"close echo {code}")
            check(remote == code, f"close {code} echoed as {remote} {reason!r}")
        ok("close-echo", "1000 1001 3000 4001")

    async def main(self):
        await self.chopped()
        await self.ping_between_fragments()
        await self.utf8_split()
        await self.max_size_ok()
        await self.close_cases()
        await self.close_echo()

    def drop_all(self):
        """Drops the connections a failed case left open."""
        for p in self.conns:
            if p.state != WebSocketClientProtocol.STATE_CLOSED and p.transport is not None:
                try:
                    p.transport.abortConnection()
                except Exception:  # already going away
                    pass


def entry(reactor):
    if len(sys.argv) < 2 or not sys.argv[1].startswith(("ws://", "wss://")):
        print("usage: /usr/bin/python3 autobahn_frames.py wss://127.0.0.1:PORT/ --max-message N", file=sys.stderr)
        raise SystemExit(2)
    url = sys.argv[1]
    max_message = 64 << 10
    if "--max-message" in sys.argv:
        max_message = int(sys.argv[sys.argv.index("--max-message") + 1])
    suite = Suite(url, max_message)

    d = within(defer.ensureDeferred(suite.main()), "the whole run", TOTAL)

    def done(_):
        return None

    def failed(f):
        if f.check(CheckFailed):
            return str(f.value)
        return f"{f.type.__name__}: {f.getErrorMessage()}\n{f.getTraceback()}"

    d.addCallbacks(done, failed)

    def finish(failure_msg):
        if failure_msg:
            print(f"FAIL: {failure_msg}", file=sys.stderr)
        print(json.dumps({"client": "autobahn", "version": autobahn.__version__, "url": url,
                          "passed": passed, "failed": failure_msg.splitlines()[0] if failure_msg else None}),
              flush=True)
        suite.drop_all()
        raise SystemExit(1 if failure_msg else 0)

    d.addCallback(finish)
    return d


if __name__ == "__main__":
    task.react(entry)

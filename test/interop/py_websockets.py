#!/usr/bin/python3
"""Interop checks of a Mles server with Python websockets 10.x (asyncio).

    /usr/bin/python3 py_websockets.py URL

URL is wss://127.0.0.1:PORT/ or ws://127.0.0.1:PORT/. Run it with Debian's
/usr/bin/python3 (python3-websockets). Each passed check prints "ok NAME";
the last stdout line is a JSON summary {"client":"python-websockets",
"passed":[...],"failed":null|"..."}. Exit status 0 only when every check
passed.
"""

import asyncio
import json
import os
import ssl
import sys
import time

import websockets

PROTO = "mles-websocket"
STEP = 5.0  # bound of every single wait, seconds
TOTAL = 40.0  # bound of the whole run
QUICK_CLOSE = 2.0  # "closed at once"

passed = []


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def ok(name, detail=""):
    passed.append(name)
    print(f"ok {name}{' ' + detail if detail else ''}", flush=True)


def show(m):
    if isinstance(m, str):
        s = "text " + json.dumps(m)
    else:
        s = f"binary <{len(m)} bytes>"
    return s if len(s) <= 120 else s[:120] + "..."


class Session:
    def __init__(self, url, channel):
        self.url = url
        self.channel = channel
        self.ssl = None
        if url.startswith("wss://"):
            # The server's certificate is self-signed.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.ssl = ctx

    async def open(self, name):
        ws = await asyncio.wait_for(
            websockets.connect(
                self.url,
                subprotocols=[PROTO],
                ssl=self.ssl,
                ping_interval=None,  # no client pings: every frame is the test's
                open_timeout=STEP,
                close_timeout=STEP,
            ),
            STEP,
        )
        ws.test_name = name
        return ws

    async def join(self, uid, channel=None):
        """Opens a connection, sends the header and waits until the server has
        processed it: a ping after the header is answered after the header."""
        ws = await self.open(uid)
        check(ws.subprotocol == PROTO, f"{uid}: subprotocol {ws.subprotocol!r}, want {PROTO}")
        # websockets offers permessage-deflate by default; the server must decline.
        check(not ws.extensions, f"{uid}: server negotiated extensions {ws.extensions!r}")
        await ws.send(json.dumps({"uid": uid, "channel": channel or self.channel}))
        token = f"joined-{uid}".encode()
        waiter = await ws.ping(token)
        await asyncio.wait_for(waiter, STEP)
        return ws


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), STEP)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{ws.test_name}: timed out after {STEP}s waiting for {what}") from None
    except websockets.ConnectionClosed as e:
        raise CheckFailed(f"{ws.test_name}: connection closed ({e}) while waiting for {what}") from None


async def expect(ws, want, what):
    got = await recv(ws, what)
    check(type(got) is type(want) and got == want, f"{ws.test_name}: {what}: got {show(got)}, want {show(want)}")


async def expect_join(ws, uid, channel, what):
    got = await recv(ws, what)
    check(isinstance(got, str), f"{ws.test_name}: {what}: join frame must be text, got {show(got)}")
    try:
        j = json.loads(got)
    except ValueError:
        raise CheckFailed(f"{ws.test_name}: {what}: join frame is not JSON: {show(got)}") from None
    check(j == {"uid": uid, "channel": channel}, f"{ws.test_name}: {what}: got join {got}, want uid={uid} channel={channel}")


async def main(url):
    run = os.urandom(6).hex()
    channel = f"py-ws-{run}"
    s = Session(url, channel)
    alice, bob, carol = f"alice-{run}", f"bob-{run}", f"carol-{run}"

    a = await s.join(alice)
    ok("subprotocol", f"{a.subprotocol} extensions=none")
    b = await s.join(bob)
    await expect_join(b, alice, channel, "bob's history: alice's join frame")
    ok("join-history")

    # ping -> pong with the same payload (websockets matches it to the ping).
    waiter = await a.ping(b"py-ping-payload")
    await asyncio.wait_for(waiter, STEP)
    ok("ping-pong")

    text_a = f"hello from {alice}: grüße κόσμε 🙂"
    bin_a = bytes([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF]) + os.urandom(500)
    text_b = f"reply from {bob}"
    bin_b = os.urandom(35000)  # 16-bit extended length
    await a.send(text_a)
    await a.send(bin_a)
    await expect(b, text_a, "alice text")
    await expect(b, bin_a, "alice binary")
    ok("a-to-b")
    await b.send(text_b)
    await b.send(bin_b)
    # alice's next delivery is bob's text: an echo of her own messages
    # would come first.
    await expect(a, text_b, "bob text (an echo of alice would come first)")
    await expect(a, bin_b, "bob binary")
    ok("b-to-a")
    mark = f"marker from {alice}"
    await a.send(mark)
    await expect(b, mark, "marker (an echo of bob would come first)")
    ok("no-echo")

    c = await s.join(carol)
    await expect_join(c, alice, channel, "history 1: alice join")
    await expect_join(c, bob, channel, "history 2: bob join")
    await expect(c, text_a, "history 3")
    await expect(c, bin_a, "history 4")
    await expect(c, text_b, "history 5")
    await expect(c, bin_b, "history 6")
    await expect(c, mark, "history 7")
    live = f"live after {carol}".encode()
    await b.send(live)
    await expect(a, live, "live message (carol's join must not be delivered live)")
    await expect(c, live, "live message after history")
    ok("history")

    # Close echo.
    for ws, code in ((a, 4001), (b, 1000), (c, 3999)):
        await asyncio.wait_for(ws.close(code=code, reason="bye"), STEP)
        check(ws.close_code == code, f"{ws.test_name}: close {code} echoed as {ws.close_code} {ws.close_reason!r}")
    ok("close-echo", "4001 1000 3999")

    # Invalid headers: closed at once with 1008.
    bad = [
        ("empty-uid", json.dumps({"uid": "", "channel": channel})),
        ("empty-channel", json.dumps({"uid": f"u-{run}", "channel": ""})),
        ("not-json", "hello, this is not JSON"),
        ("uid-number", '{"uid":7,"channel":"' + channel + '"}'),
        ("binary", json.dumps({"uid": f"bin-{run}", "channel": channel}).encode()),
    ]
    for name, header in bad:
        ws = await s.open(f"bad-{name}")
        start = time.monotonic()
        await ws.send(header)
        try:
            got = await asyncio.wait_for(ws.recv(), STEP)
            raise CheckFailed(f"invalid header {name}: got a message {show(got)} instead of a close")
        except websockets.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            raise CheckFailed(f"invalid header {name}: not closed within {STEP}s") from None
        elapsed = time.monotonic() - start
        await asyncio.wait_for(ws.wait_closed(), STEP)
        want = 1008
        check(ws.close_code == want, f"invalid header {name}: close code {ws.close_code} {ws.close_reason!r}, want {want}")
        check(elapsed < QUICK_CLOSE, f"invalid header {name}: closed after {elapsed:.2f}s, want at once")
    ok("invalid-header-1008", " ".join(n for n, _ in bad))

    # The invalid headers created no member: a new joiner of the channel
    # sees exactly the history above plus carol's join, nothing else.
    d = await s.join(f"dave-{run}")
    for i, want in enumerate([alice, bob]):
        await expect_join(d, want, channel, f"history {i + 1}")
    for i, want in enumerate([text_a, bin_a, text_b, bin_b, mark]):
        await expect(d, want, f"history {i + 3}")
    # carol's join frame went into the history after her replay, before live.
    await expect_join(d, carol, channel, "history 8: carol join")
    await expect(d, live, "history 9")
    waiter = await d.ping(b"end")
    await asyncio.wait_for(waiter, STEP)
    check(not d.messages, f"dave got more history than expected: {[show(m) for m in d.messages]}")
    await asyncio.wait_for(d.close(), STEP)
    ok("no-bad-joins-in-history")


def entry():
    if len(sys.argv) < 2 or not sys.argv[1].startswith(("ws://", "wss://")):
        print("usage: /usr/bin/python3 py_websockets.py wss://127.0.0.1:PORT/", file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1]
    failed = None
    try:
        asyncio.run(asyncio.wait_for(main(url), TOTAL))
    except CheckFailed as e:
        failed = str(e)
    except asyncio.TimeoutError:
        failed = f"whole run exceeded {TOTAL}s"
    except Exception as e:  # any client error is a failure with its reason
        failed = f"{type(e).__name__}: {e}"
    if failed:
        print(f"FAIL: {failed}", file=sys.stderr)
    print(json.dumps({"client": "python-websockets", "version": websockets.version.version, "url": url,
                      "passed": passed, "failed": failed}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    entry()

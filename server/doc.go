// Package server is the Mles server: gnet event loops own the sockets, a
// tlsbridge.Conn per connection runs crypto/tls inside that model, the codec
// package parses the HTTP upgrade and WebSocket frames incrementally, and
// each channel's ring carries its messages and history.
//
// A connection moves through hello, queued and handshake (TLS only), then
// upgrade, header, joined and closing (see connState); every state has a
// deadline, and every exit releases the handshake slot, the membership,
// the TLS state and the buffers exactly once. A TLS connection costs no
// goroutine until its whole ClientHello is in and the handshake gate
// (hsGate) gives it a slot.
//
// Fan-out: a published message is stored once in the channel's ring. Each
// event loop keeps its members of a channel in a group; a publish marks
// each group dirty and wakes its loop once per burst (another loop through
// its inbox, one wake for all the groups posted to it meanwhile), and the
// loop drains every member of the group from its cursor to the head with
// one write: the members at the group's common cursor share one batch of
// small frames, copied from the ring once per drain, the others get their
// own (a write in plain mode and one tls.Conn.Write in TLS mode; see
// conn.drain for why not writev). A publishing loop drains its own groups
// every half ring, so a burst read in one poll round cannot lap members
// that keep up. A member whose
// unsent bytes pass Options.MaxPending is paused (the ring is its queue) and
// closed as a slow consumer when the ring laps it or the grace period ends.
// A large frame goes out in slices of the ring's shared frame while the
// output has room, so pending bytes stay near MaxPending whatever the
// message size. gnet has no writable callback: a loop keeps the
// connections that wait for their output (paused, in slices, closing) on a
// waiting list that a timer brings back every pumpInterval.
//
// Each group keeps a ring.Mark at its lowest cursor, so the history byte
// caps never evict what a member has not read; stored join frames live
// beside the ring (ring.Join), so joins never lap anyone.
//
// Every codec error closes through one path (conn.closeErr): the close
// code and short reason come from codec.CloseCodeOf. Closing with a code
// stops data, finishes a frame in slices, sends the
// close frame and closes once gnet has flushed the output, or after
// Options.CloseLinger. Shutdown first delivers what the channels accepted
// (for three quarters of DrainTimeout), then 1001.
//
// # Files
//
//   - server.go: Server, New, Start, Shutdown, Stats; the gnet boot and
//     tick callbacks.
//   - options.go, const.go: Options, its defaults (one place) and checks.
//   - conn.go: a connection's state and the gnet open, traffic and close
//     callbacks; frames after the upgrade; deadlines; closing politely.
//   - handshake.go, hsgate.go: before the WebSocket: the ClientHello, the
//     handshake gate, the TLS bridge, the HTTP upgrade.
//   - join.go: the header frame, joining a channel with its history,
//     leaving.
//   - fanout.go: from a publish to the write, top to bottom; slow.go:
//     pausing, resuming and closing members that do not keep up.
//   - channel.go: channels and the registry that names them.
//   - loop.go: per-event-loop state (scratch buffers, the waiting list,
//     sweeps).
//   - close.go: why a connection ended and what it is told.
//   - perip.go, ratelimit.go, proxy.go: the per-address limits and the
//     client's address behind a proxy (PROXY protocol, X-Forwarded-For).
//   - httpside.go: requests that are not upgrades, served by net/http
//     off the loops.
//   - metrics.go: per-loop counters and the Metrics snapshot.
//   - ids.go, memory.go, gnetlog.go: hashed ids for logs, giving memory
//     back to the OS, gnet's logs.
//
// # Words
//
// One word per thing, in code, comments, logs and tests:
//
//   - connection: one accepted socket, whatever its state (conn).
//   - client: the program at the other end of a connection.
//   - member: a connection that has joined a channel (stJoined); the
//     channel delivers to its members. Not "subscriber" or "session".
//   - header frame: the Mles header, the first WebSocket message,
//     {"uid", "channel", "auth"} (SPEC 1.2's word); join frame: its copy
//     without auth that the channel keeps for later joiners (ring.Join).
//     The upgrade request has a "header block"; a WebSocket frame has a
//     "frame header".
//   - publisher: the member that sent a message; it is not delivered back
//     to it.
//   - peer: another Mles server this one links to (SPEC 1.5). Test code
//     calls its connections clients, not peers.
//   - history: what a channel keeps for joiners (the ring's bounded
//     view); backlog: what a member has not been sent yet.
//
// Use:
//
//	srv, err := server.New(server.Options{Addr: ":8443", TLS: cfg})
//	if err != nil { ... }
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Shutdown(context.Background())
package server

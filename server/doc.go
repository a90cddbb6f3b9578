// Package server is the Mles server: gnet event loops own the sockets, a
// tlsbridge.Conn per connection runs crypto/tls inside that model, the codec
// package parses the HTTP upgrade and WebSocket frames incrementally, and
// each channel's ring carries its messages and history.
//
// A connection moves through handshake, upgrade, header, joined and closing
// (see connState); every state but closing has a deadline, and every exit
// releases the membership, the TLS state and the buffers exactly once, in
// OnClose.
//
// Fan-out: a published message is stored once in the channel's ring. Each
// event loop keeps its subscribers of a channel in a group; a publish marks
// each group dirty and wakes its loop once per burst, and the loop drains
// every subscriber of the group from its cursor to the head with one write
// (writev in plain mode, one tls.Conn.Write in TLS mode). A subscriber whose
// unsent bytes pass Options.MaxPending is paused (the ring is its queue) and
// closed as a slow consumer when the ring laps it or the grace period ends.
//
// Use:
//
//	srv, err := server.New(server.Options{Addr: ":8443", TLS: cfg})
//	if err != nil { ... }
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Shutdown(context.Background())
package server

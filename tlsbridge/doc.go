// Package tlsbridge runs the standard library's crypto/tls inside an event
// loop that owns its sockets (gnet), without a goroutine per connection and
// without a TLS fork.
//
// The loop reads ciphertext from the socket and hands it to a Conn; it gets
// plaintext back through a callback; it encrypts with Conn.Write; and it
// writes whatever ciphertext the Conn has queued to the socket. The Conn never
// touches the socket, so records reach it in the order they were made.
//
// # Why a goroutine for the handshake
//
// crypto/tls latches every error returned by the underlying net.Conn during
// the handshake, so a handshake cannot be suspended with "would block". It
// runs instead in a short-lived goroutine (Conn.Start), bounded by
// Config.Timeout, whose reads wait on a condition variable
// until the loop feeds bytes; its writes go to the output buffer and call
// Config.Wake so the loop flushes them. GetCertificate (ACME) may block there
// without stalling a loop.
//
// After the handshake the loop drives the same tls.Conn inline: the
// transport returns the bytes fed in this callback, then a net.Error whose
// Temporary() is true, which crypto/tls's record layer does not latch
// (readRecordOrCCS); a partial record waits inside the tls.Conn for the next
// callback.
//
// # Use from a gnet handler
//
//	// OnTraffic, before the handshake: leave the bytes in gnet's buffer
//	// until a whole ClientHello is in, so that a silent or slow client
//	// costs no goroutine (and, in the server, no handshake slot).
//	hello, _ := gc.Peek(-1)
//	if ok, err := tlsbridge.HelloComplete(hello); err != nil || !ok { ... }
//	tc := tlsbridge.NewConn(tlsbridge.Config{
//		TLS:     cfg, // tlsbridge.ServerConfig(source.GetCertificate)
//		Wake:    func() { _ = gc.Wake(nil) }, // brings the loop to OnTraffic
//		Timeout: 10 * time.Second,
//	})
//	tc.Start()
//
//	// OnTraffic (also reached through Wake, with no new bytes):
//	buf, _ := gc.Next(-1) // valid until OnTraffic returns; ReadPlain keeps none of it
//	err := tc.ReadPlain(buf, scratch, onPlaintext) // nil buf is fine
//	out := tc.PeekOutput() // or: wbuf = tc.AppendOutput(wbuf[:0])
//	n, _ := gc.Write(out)  // gnet copies what the socket does not take
//	tc.DiscardOutput(n)
//	switch {
//	case tc.State() == tlsbridge.Failed: // the alert, if any, was flushed above
//		if tlsbridge.IsPlainHTTP(tc.HandshakeErr()) {
//			gc.Write([]byte(tlsbridge.PlainHTTPResponse))
//		}
//		return gnet.Close
//	case err != nil: // io.EOF is the peer's close_notify
//		return gnet.Close
//	}
//
//	// OnClose:
//	tc.Close()
//
// Plaintext replies are written with tc.Write from the loop (inside the
// ReadPlain callback or after it) and flushed the same way, once per
// callback.
//
// # Ownership
//
// Conn methods say who may call them: "loop" methods only from the goroutine
// that owns the connection, "any goroutine" methods from anywhere. The bytes
// given to ReadPlain's callback live in the caller's scratch buffer and are
// valid until the callback returns; PeekOutput's slice is valid until the
// next loop call.
//
// # Certificates
//
// SelfSigned makes an ephemeral certificate for localhost, FileSource serves
// --tls-cert/--tls-key and reloads them on SIGHUP, and ServerConfig builds the
// tls.Config (TLS 1.2+, ALPN http/1.1) around any GetCertificate function.
//
// # Files
//
//   - conn.go: Conn, the handshake goroutine and the loop's side.
//   - transport.go: the net.Conn crypto/tls reads and writes through.
//   - hello.go: HelloComplete, whether a whole ClientHello is buffered.
//   - certs.go: certificate sources (static, files reloaded on SIGHUP,
//     self-signed).
//   - errors.go: the bridge's errors and how to answer plain HTTP.
package tlsbridge

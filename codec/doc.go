// Package codec is the wire protocol of the Mles server, as pure functions
// over byte slices: no sockets, no goroutines, no event loop. Everything here
// is fed bytes as they arrive, in any chunking, and is fuzzed and
// benchmarked on its own.
//
// # Life of a connection
//
// The server reads the HTTP upgrade with an UpgradeParser. It keeps the
// request bytes itself and calls Parse with all of them after every read;
// Parse scans only what is new:
//
//	var up codec.UpgradeParser
//	n, err := up.Parse(in) // in: every byte received so far
//	var he codec.HandshakeError
//	switch {
//	case errors.As(err, &he): // answer its status, then close
//		out = codec.AppendHTTPError(out, he.Status(), he.Reason())
//	case n == 0: // header block incomplete: wait for more bytes
//	case !up.Request.Upgrade: // plain HTTP: the server's HTTP side
//	default:
//		out = codec.AppendUpgradeResponse(out, &up.Request.Key)
//		rest := in[n:] // the first frame may already be here
//	}
//
// Frames are then parsed by a FrameReader, one per connection. Next consumes
// bytes and reports one event at a time; the reader copies what it needs, so
// the caller may discard everything Next consumed:
//
//	fr := codec.FrameReader{MaxMessage: 16 << 20}
//	for len(p) > 0 {
//		ev, n, err := fr.Next(p)
//		p = p[n:]
//		if err != nil { // ProtocolError: close with its code
//			code, reason := codec.CloseCodeOf(err)
//			out = codec.AppendClose(out, code, reason)
//			break
//		}
//		switch ev {
//		case codec.EventMessage:
//			frame := fr.TakeFrame() // ready to fan out, payload not copied
//		case codec.EventPing:
//			out = codec.AppendFrame(out, ws.OpPong, fr.Control())
//		case codec.EventClose: // echo the code, then close
//			out = codec.AppendClose(out, fr.CloseCode(), "")
//		}
//	}
//
// The first message is the Mles header (SPEC 1.2). Message gives its
// payload for DecodeHeader and CheckAuth; ReleaseMessage then lets the
// reader reuse the buffer, and AppendJoinFrame builds the auth-stripped
// join frame the channel history keeps.
//
// # Zero copy, and who owns what
//
// The reader unmasks payload into a message buffer that starts with
// MaxServerHeader (10) bytes of headroom. TakeFrame writes the unmasked
// server frame header into that headroom and hands the whole buffer to the
// caller, who may share it among all subscribers of a channel for as long
// as it likes: the reader never touches it again. Message and Control
// return bytes that the reader still owns, valid until the next Next.
//
// Parsing allocates nothing but message buffers, which grow with the bytes
// that actually arrive and never with a length a peer merely declares.
// Headers split across reads wait in a 14-byte array inside the reader.
//
// # Errors
//
// Every error that ends a WebSocket session is a ProtocolError (RFC 6455)
// or a PolicyError (SPEC: the header frame, auth) that carries the close
// code to send and a short reason; every refused handshake is a
// HandshakeError with its HTTP status. All are constants of string types,
// as in gobwas/ws: immutable, compared by errors.Is, found by errors.As,
// and the error path does not allocate. The protocol rules come from RFC 6455;
// each check cites its section.
//
// # Words
//
// As in server's glossary: the "header frame" is the Mles header (Header,
// DecodeHeader, the ErrHeader errors), the upgrade request has a "header
// block" of "header lines" (MaxHeaderBlock, ErrHeaderLine), and a WebSocket
// frame has a "frame header" (AppendFrameHeader, FrameHeaderLen).
//
// # Files
//
//   - handshake.go: the incremental HTTP upgrade parser (UpgradeParser).
//   - response.go: the answers to it (101 with the accept key, HTTP errors).
//   - frame.go: the incremental RFC 6455 frame reader and validator.
//   - message.go: what the reader hands out after an event (Message,
//     Frame, TakeFrame, Control) and how it keeps its buffer.
//   - write.go: frames, close frames and join frames for the server to send.
//   - close.go: close codes, reasons and CloseCodeOf.
//   - header.go: the Mles header frame (DecodeHeader, its limits).
//   - auth.go: the SipHash auth token (SPEC 1.2).
//   - errors.go: the error types.
package codec

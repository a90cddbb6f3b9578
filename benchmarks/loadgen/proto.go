package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Mode is the protocol spoken to the server under test.
type Mode string

const (
	ModeMles       Mode = "mles"       // Mles header frame, then raw messages
	ModeCentrifugo Mode = "centrifugo" // Centrifugo JSON protocol
	ModeRawTLS     Mode = "rawtls"     // connect scenario only: TCP + TLS handshake
)

// mlesSubprotocol is the subprotocol every Mles client asks for.
const mlesSubprotocol = "mles-websocket"

// errJoin reports a member that could not join its channel.
var errJoin = errors.New("loadgen: join failed")

// session is a client's protocol state on one connection.
type session struct {
	*wsConn
	mode    Mode
	channel string
	marker  [markerLen]byte
	nextID  uint64 // Centrifugo command id; owned by the publishing goroutine
	pubBuf  []byte // Centrifugo publish command, reused
	epoch   string // Centrifugo stream epoch from the subscribe reply
}

func (s *session) subprotocol() string {
	if s.mode == ModeMles {
		return mlesSubprotocol
	}
	return ""
}

// openSession dials the (first) -url server, upgrades and joins channel as uid.
func openSession(ctx context.Context, o *Options, uid, channel string, readBuf int, linger0 bool) (*session, error) {
	return openSessionAt(ctx, o, o.target, uid, channel, readBuf, linger0)
}

// openSessionAt is openSession to server t.
func openSessionAt(ctx context.Context, o *Options, t *target, uid, channel string, readBuf int, linger0 bool) (*session, error) {
	s := &session{mode: o.Mode, channel: channel, marker: o.marker}
	c, err := dialWS(ctx, t, s.subprotocol(), readBuf, linger0, nil)
	if err != nil {
		return nil, err
	}
	s.wsConn = c
	if err := s.join(uid, ""); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// join sends the Mles header frame, or Centrifugo's connect and subscribe and
// waits for the subscribe reply. recoverEpoch, when not empty, asks Centrifugo
// to replay the stream from its start (the history scenario).
func (s *session) join(uid, recoverEpoch string) error {
	switch s.mode {
	case ModeMles:
		hdr := fmt.Sprintf(`{"uid":%q,"channel":%q}`, uid, s.channel)
		return s.writeFrame(opText, []byte(hdr))
	case ModeCentrifugo:
		sub := fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, s.channel)
		if recoverEpoch != "" {
			sub = fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q,"recover":true,"epoch":%q,"offset":0}}`,
				s.channel, recoverEpoch)
		}
		if err := s.writeFrames(opText, []byte(`{"id":1,"connect":{}}`), []byte(sub)); err != nil {
			return err
		}
		s.nextID = 3
		return nil
	}
	return fmt.Errorf("mode %q has no join", s.mode)
}

// awaitSubscribed reads Centrifugo replies until the subscribe reply (id 2),
// handing any of our payloads it carries (recovered history) to onMsg.
func (s *session) awaitSubscribed(clk clock, onMsg func(message, int64)) error {
	s.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer s.nc.SetReadDeadline(time.Time{})
	for {
		for {
			op, _, p, ok := s.fr.next()
			if !ok {
				break
			}
			if op == opClose {
				return fmt.Errorf("%w: closed %s", errJoin, closeReason(p))
			}
			if op != opText {
				continue
			}
			if onMsg != nil {
				s.scanMarkers(p, clk.now(), onMsg)
			}
			for line := range bytes.SplitSeq(p, []byte("\n")) {
				if bytes.HasPrefix(line, []byte(`{"id":2,`)) {
					if bytes.Contains(line, []byte(`"error"`)) {
						return fmt.Errorf("%w: %s", errJoin, line)
					}
					if _, after, ok := bytes.Cut(line, []byte(`"epoch":"`)); ok {
						if e, _, ok := bytes.Cut(after, []byte(`"`)); ok {
							s.epoch = string(e)
						}
					}
					return nil
				}
				if bytes.HasPrefix(line, []byte(`{"id":1,`)) && bytes.Contains(line, []byte(`"error"`)) {
					return fmt.Errorf("%w: %s", errJoin, line)
				}
			}
		}
		if err := s.fr.fill(s.nc); err != nil {
			return fmt.Errorf("%w: %v", errJoin, err)
		}
	}
}

// publish sends one payload: a binary frame (Mles) or a publish command whose
// data is the payload as a JSON string (Centrifugo).
func (s *session) publish(payload []byte) error {
	if s.mode == ModeMles {
		return s.writeFrame(opBinary, payload)
	}
	b := append(s.pubBuf[:0], `{"id":`...)
	b = strconv.AppendUint(b, s.nextID, 10)
	s.nextID++
	b = append(b, `,"publish":{"channel":"`...)
	b = append(b, s.channel...)
	b = append(b, `","data":"`...)
	b = append(b, payload...)
	b = append(b, `"}}`...)
	s.pubBuf = b
	return s.writeFrame(opText, b)
}

// handleFrame processes one server frame: our payloads go to onMsg, pings are
// answered. It reports the close frame's status code (or -1) when the server
// closed the WebSocket.
func (s *session) handleFrame(op byte, p []byte, now int64, onMsg func(message, int64)) (closed bool, err error) {
	switch op {
	case opBinary, opText, opCont:
		if s.mode == ModeMles {
			if len(p) >= minPayload && [markerLen]byte(p[:markerLen]) == s.marker {
				if m, ok := decodePayload(p); ok {
					onMsg(m, now)
				}
			}
			return false, nil
		}
		if len(p) == 2 && p[0] == '{' && p[1] == '}' {
			// Centrifugo ping: the client answers with an empty command.
			return false, s.writeFrame(opText, p)
		}
		s.scanMarkers(p, now, onMsg)
	case opPing:
		return false, s.writeFrame(opPong, p)
	case opClose:
		return true, nil
	}
	return false, nil
}

// scanMarkers finds every payload of this run inside a Centrifugo frame (one
// frame may carry several newline-separated pushes, or a recovered history).
func (s *session) scanMarkers(p []byte, now int64, onMsg func(message, int64)) {
	for {
		i := bytes.Index(p, s.marker[:])
		if i < 0 {
			return
		}
		p = p[i:]
		if m, ok := decodePayload(p); ok {
			onMsg(m, now)
		}
		p = p[markerLen:]
	}
}

// closeReason formats a close frame body.
func closeReason(p []byte) string {
	if len(p) < 2 {
		return "without status"
	}
	return fmt.Sprintf("%d %q", binary.BigEndian.Uint16(p), p[2:])
}

// closeCode returns the status of a close frame body, or 1005 (no status).
func closeCode(p []byte) int {
	if len(p) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(p))
}

// readLoop reads and dispatches frames until the connection fails or the
// server closes it; it returns the close status (0 when the connection ended
// without a close frame).
func (s *session) readLoop(clk clock, onMsg func(message, int64)) (code int, err error) {
	fr := &s.fr
	for {
		now := clk.now()
		for {
			op, _, p, ok := fr.next()
			if !ok {
				break
			}
			closed, werr := s.handleFrame(op, p, now, onMsg)
			if closed {
				return closeCode(p), nil
			}
			if werr != nil {
				return 0, werr
			}
		}
		if err := fr.fill(s.nc); err != nil {
			return 0, err
		}
	}
}

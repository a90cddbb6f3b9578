package codec

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"strings"

	"github.com/gobwas/ws"
	json "github.com/goccy/go-json"
)

// Errors of the Mles header frame (SPEC 1.2). Each is a PolicyError (close
// code 1008) whose text is the short reason for the close frame; the server
// closes at once and creates no channel.
const (
	// ErrHeaderBinary: the header frame was a binary message; it must be
	// text.
	ErrHeaderBinary PolicyError = "header must be a text message"
	// ErrHeaderJSON: the header is not one JSON object.
	ErrHeaderJSON PolicyError = "header is not a JSON object"
	// ErrHeaderUID: uid missing, null, empty, not a string, or not
	// printable ASCII.
	ErrHeaderUID PolicyError = "invalid uid"
	// ErrHeaderChannel: channel missing, null, empty, not a string, or not
	// printable ASCII.
	ErrHeaderChannel PolicyError = "invalid channel"
	// ErrHeaderAuth: auth present but neither a string nor null.
	ErrHeaderAuth PolicyError = "invalid auth"
	// ErrHeaderTooLong: uid, channel or auth over its limit, or the whole
	// header frame over HeaderLimits.MaxBytes.
	ErrHeaderTooLong PolicyError = "header field too long"
)

// Defaults of HeaderLimits, in bytes.
const (
	DefaultMaxUID     = 1 << 10
	DefaultMaxChannel = 1 << 10
	DefaultMaxBytes   = 64 << 10
	// maxAuth bounds auth, which is 16 hex digits when valid: it becomes
	// part of the session's identity (SPEC 1.2 duplicates), so an
	// attacker may not make it large.
	maxAuth = 1 << 10
)

// HeaderLimits bounds the fields of a header frame, in bytes; a zero field
// takes its default. The limits are [beyond] mles-rs (SPEC 1.2).
type HeaderLimits struct {
	MaxUID     int // default DefaultMaxUID (1 KiB)
	MaxChannel int // default DefaultMaxChannel (1 KiB)
	MaxBytes   int // the whole frame; default DefaultMaxBytes (64 KiB)
}

// Header is a decoded, validated Mles header frame (SPEC 1.2).
type Header struct {
	UID, Channel string
	// Auth is the auth token as sent; HasAuth tells a present token
	// (possibly "") from an absent or null one.
	Auth    string
	HasAuth bool
}

// wireHeader is the JSON shape of the header frame.
type wireHeader struct {
	UID     string    `json:"uid"`
	Channel string    `json:"channel"`
	Auth    optString `json:"auth"`
}

// optString is a JSON string that may be null or absent (set is false
// then). go-json reports a non-string value for a *string as a syntax
// error, which would hide that auth was the culprit; this type names it.
type optString struct {
	s   string
	set bool
}

// UnmarshalJSON implements json.Unmarshaler for optString. A token without
// escapes (every valid auth token) costs one allocation for the string.
func (o *optString) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*o = optString{}
		return nil
	case len(b) < 2 || b[0] != '"':
		return ErrHeaderAuth
	case bytes.IndexByte(b, '\\') < 0:
		*o = optString{s: string(b[1 : len(b)-1]), set: true}
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return ErrHeaderAuth
	}
	*o = optString{s: s, set: true}
	return nil
}

// DecodeHeader decodes and validates a header frame's payload (SPEC 1.2):
// one JSON object whose uid and channel are non-empty strings of printable
// ASCII (0x20-0x7E; control characters are refused, since the names end up
// in logs and history) and whose optional auth is a string or null. Unknown
// fields are ignored; the opcode is the caller's check (ErrHeaderBinary).
//
// Errors are the ErrHeader sentinels, all with close code 1008.
//
// goccy/go-json matches field names as encoding/json does, case-insensitively
// when no exact match exists ("UID" sets uid), where mles-rs (serde) would
// ignore such a field and so refuse the header. go-json copies data once,
// and uid and channel point into that copy; auth is one more allocation, and
// frames over 256 bytes cost one more to copy uid and channel out.
func DecodeHeader(data []byte, lim HeaderLimits) (Header, error) {
	maxUID := orDefault(lim.MaxUID, DefaultMaxUID)
	maxChannel := orDefault(lim.MaxChannel, DefaultMaxChannel)
	if len(data) > orDefault(lim.MaxBytes, DefaultMaxBytes) {
		return Header{}, ErrHeaderTooLong
	}
	// encoding/json.Valid screens the frame before go-json sees it:
	// go-json v0.10.5 panics on some malformed keys (an invalid escape such
	// as {"\4), and a panic on an event loop would take the server down
	// (goccy/go-json issues 575 and 604, unfixed at the time of writing).
	// The stdlib validator is strict, allocation-free and, for a frame of
	// a few dozen bytes, costs less than the decode itself.
	if !startsObject(data) || !stdjson.Valid(data) {
		return Header{}, ErrHeaderJSON
	}
	var w wireHeader
	err := json.UnmarshalNoEscape(data, &w)
	if err != nil {
		return Header{}, fieldError(err)
	}
	switch {
	case len(w.UID) > maxUID, len(w.Channel) > maxChannel, len(w.Auth.s) > maxAuth:
		return Header{}, ErrHeaderTooLong
	case !printableASCII(w.UID):
		return Header{}, ErrHeaderUID
	case !printableASCII(w.Channel):
		return Header{}, ErrHeaderChannel
	}
	h := Header{UID: w.UID, Channel: w.Channel, Auth: w.Auth.s, HasAuth: w.Auth.set}
	if len(data) > pinLimit {
		h.UID, h.Channel = cloneStrings(h.UID, h.Channel)
	}
	return h, nil
}

// pinLimit is the header frame size above which DecodeHeader copies uid and
// channel: go-json's strings point into its copy of the whole frame, and
// the server keeps them for the life of the session, so a frame padded
// with unknown fields would otherwise pin up to MaxBytes per connection.
const pinLimit = 256

// cloneStrings copies a and b (strings or byte slices) into strings backed
// by one allocation, none when both are empty.
func cloneStrings[T string | []byte](a, b T) (string, string) {
	if len(a)+len(b) == 0 {
		return "", ""
	}
	var sb strings.Builder
	sb.Grow(len(a) + len(b))
	for _, v := range [2]T{a, b} {
		switch v := any(v).(type) { // no string(v) conversion: it could allocate
		case string:
			sb.WriteString(v)
		case []byte:
			sb.Write(v)
		}
	}
	s := sb.String()
	return s[:len(a)], s[len(a):]
}

// fieldError maps a go-json error to the sentinel of the field it is about.
// go-json names the field by its Go name ("UID").
func fieldError(err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, ErrHeaderAuth):
		return ErrHeaderAuth
	case !errors.As(err, &te):
		return ErrHeaderJSON
	case strings.EqualFold(te.Field, "uid"):
		return ErrHeaderUID
	case strings.EqualFold(te.Field, "channel"):
		return ErrHeaderChannel
	}
	return ErrHeaderJSON
}

// startsObject reports whether the first non-whitespace byte of data opens
// a JSON object; go-json would accept "null" into a struct.
func startsObject(data []byte) bool {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// printableASCII reports whether s is non-empty and all bytes are in
// 0x20-0x7E.
func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// orDefault returns v, or def when v is not positive.
func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// The join message's fixed parts (SPEC 1.3).
const (
	joinOpen   = `{"uid":"`
	joinMiddle = `","channel":"`
	joinClose  = `"}`
)

// AppendJoinJSON appends the join message the server stores in a channel's
// history in place of the received header: {"uid":"...","channel":"..."},
// without auth, so history never leaks auth tokens (SPEC 1.3). Quote,
// backslash and control characters are escaped (RFC 8259 section 7); other
// bytes are copied as they are.
func AppendJoinJSON(dst []byte, uid, channel string) []byte {
	dst = append(dst, joinOpen...)
	dst = appendJSONString(dst, uid)
	dst = append(dst, joinMiddle...)
	dst = appendJSONString(dst, channel)
	return append(dst, joinClose...)
}

// AppendJoinFrame appends the join message of AppendJoinJSON as a complete
// unmasked text frame, ready to be stored and replayed (MlesTalk expects
// join frames as text, SPEC 1.3).
func AppendJoinFrame(dst []byte, uid, channel string) []byte {
	n := len(joinOpen) + jsonStringLen(uid) + len(joinMiddle) + jsonStringLen(channel) + len(joinClose)
	dst = AppendFrameHeader(dst, ws.OpText, n)
	return AppendJoinJSON(dst, uid, channel)
}

// hexDigits are the lowercase hex digits, for \u escapes and auth tokens.
const hexDigits = "0123456789abcdef"

// appendJSONString appends the body of a JSON string holding s.
func appendJSONString(dst []byte, s string) []byte {
	for i := range len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// jsonStringLen returns how many bytes appendJSONString appends for s.
func jsonStringLen(s string) int {
	n := len(s)
	for i := range len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}

package server_test

// Acceptance 3 (issue 2): auth (SPEC 1.2) and the duplicate policy.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/mles/mles/server"
)

// TestAuthKnownAnswers pins the test's own SipHash helper to the SPEC
// 1.2 known answers, so the server tests below rest on verified tokens.
func TestAuthKnownAnswers(t *testing.T) {
	cases := []struct{ uid, channel, key, want string }{
		{"alice", "example", "", "9b3b95527f7c2d80"},              // no MLES_KEY
		{"alice", "example", "secret", "afa46b8689dae7a5"},        // MLES_KEY=secret
		{"bob", "mles-channel", "0123456789", "f1d7402d0a290bdc"}, // MLES_KEY=0123456789
	}
	for _, c := range cases {
		if got := authToken(c.uid, c.channel, c.key); got != c.want {
			t.Errorf("authToken(%q, %q, %q) = %s, want %s", c.uid, c.channel, c.key, got, c.want)
		}
	}
}

// authCase is one join attempt: the raw header frame and whether the
// server must admit it.
type authCase struct {
	name   string
	header string
	accept bool
}

// runAuthCases joins a witness on channel "example", then tries each case
// in turn: an accepted joiner's message reaches the witness; a refused one
// is closed with 1008 at once and never becomes a member.
func runAuthCases(t *testing.T, ts *testServer, witnessAuth string, cases []authCase) {
	t.Helper()
	var w *rawClient
	if witnessAuth == "" {
		w = ts.join(t, "witness", "example")
	} else {
		w = ts.join(t, "witness", "example", witnessAuth)
	}
	ts.waitMembers(t, 1)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.upgraded(t, dialConfig{})
			c.mustSend(t, ws.OpText, []byte(tc.header))
			if !tc.accept {
				c.expectClose(t, 1008, quickClose)
				if got := ts.Stats().Members; got != 1 {
					t.Fatalf("Stats().Members = %d after a refused join, want 1", got)
				}
				return
			}
			ts.waitMembers(t, 2)
			probe := fmt.Sprintf("probe %d", i)
			c.mustSend(t, ws.OpText, []byte(probe))
			w.expectMsg(t, ws.OpText, probe)
			c.Close()
			ts.waitMembers(t, 1)
		})
	}
}

// TestAuthWithKey checks SPEC 1.2 with MLES_KEY=secret: auth required
// and must match SipHash(uid||channel||key).
func TestAuthWithKey(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, func(o *server.Options) { o.Key, o.KeySet = "secret", true })
		runAuthCases(t, ts, authToken("witness", "example", "secret"), []authCase{
			// The SPEC known answer.
			{"known-answer", `{"uid":"alice","channel":"example","auth":"afa46b8689dae7a5"}`, true},
			// Hex digits in either case.
			{"upper-case", `{"uid":"alice","channel":"example","auth":"AFA46B8689DAE7A5"}`, true},
			// Unknown fields are ignored.
			{"extra-field", `{"uid":"alice","channel":"example","auth":"afa46b8689dae7a5","x":[1]}`, true},
			// The token without the key is wrong when the key is set.
			{"keyless-token", `{"uid":"alice","channel":"example","auth":"9b3b95527f7c2d80"}`, false},
			// A token for another uid.
			{"other-uid", `{"uid":"alice","channel":"example","auth":"` + authToken("bob", "example", "secret") + `"}`, false},
			// Missing auth is refused when MLES_KEY is set.
			{"missing", `{"uid":"alice","channel":"example"}`, false},
			// null is the same as missing.
			{"null", `{"uid":"alice","channel":"example","auth":null}`, false},
			// Empty string.
			{"empty", `{"uid":"alice","channel":"example","auth":""}`, false},
			// One digit short.
			{"short", `{"uid":"alice","channel":"example","auth":"afa46b8689dae7a"}`, false},
			// One digit too many.
			{"long", `{"uid":"alice","channel":"example","auth":"afa46b8689dae7a50"}`, false},
			// Not hex.
			{"not-hex", `{"uid":"alice","channel":"example","auth":"zfa46b8689dae7a5"}`, false},
		})
	})
}

// TestAuthEmptyKey checks that an empty but set MLES_KEY still requires
// auth (the token is then the keyless one).
func TestAuthEmptyKey(t *testing.T) {
	ts := startServer(t, mode{"plain", false}, func(o *server.Options) { o.Key, o.KeySet = "", true })
	runAuthCases(t, ts, authToken("witness", "example", ""), []authCase{
		// Required even though the key is empty.
		{"missing", `{"uid":"alice","channel":"example"}`, false},
		// SipHash(uid||channel||"").
		{"keyless-token", `{"uid":"alice","channel":"example","auth":"9b3b95527f7c2d80"}`, true},
	})
}

// TestAuthNoKey checks SPEC 1.2 without MLES_KEY: auth optional, but a
// present one must be right.
func TestAuthNoKey(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, nil)
		runAuthCases(t, ts, "", []authCase{
			// Absent auth is accepted.
			{"absent", `{"uid":"alice","channel":"example"}`, true},
			// null auth is absent.
			{"null", `{"uid":"alice","channel":"example","auth":null}`, true},
			// The SPEC known answer.
			{"known-answer", `{"uid":"alice","channel":"example","auth":"9b3b95527f7c2d80"}`, true},
			// Present but wrong.
			{"wrong", `{"uid":"alice","channel":"example","auth":"0123456789abcdef"}`, false},
			// The keyed token is wrong without a key.
			{"keyed-token", `{"uid":"alice","channel":"example","auth":"afa46b8689dae7a5"}`, false},
			// Present but empty.
			{"empty", `{"uid":"alice","channel":"example","auth":""}`, false},
		})
	})
}

// TestDuplicate checks SPEC 1.2: a second live session with the same
// (uid, channel, auth) is refused and the first kept; with
// --replace-duplicate the first is closed with 1008 "replaced" instead.
func TestDuplicate(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		t.Run("refuse", func(t *testing.T) {
			ts := startServer(t, m, nil)
			w := ts.join(t, "witness", "dup")
			first := ts.join(t, "alice", "dup", authToken("alice", "dup", ""))
			ts.waitMembers(t, 2)
			second := ts.join(t, "alice", "dup", authToken("alice", "dup", ""))
			second.expectClose(t, 1008, quickClose)
			// The first still works both ways.
			first.mustSend(t, ws.OpText, []byte("still here"))
			w.recvUntil(t, ws.OpText, "still here")
			w.mustSend(t, ws.OpText, []byte("hello first"))
			first.recvUntil(t, ws.OpText, "hello first")
			if got := ts.Stats().Members; got != 2 {
				t.Fatalf("Stats().Members = %d, want 2", got)
			}
			// Without auth as well.
			a := ts.join(t, "nobody", "dup")
			ts.waitMembers(t, 3)
			b := ts.join(t, "nobody", "dup")
			b.expectClose(t, 1008, quickClose)
			w.mustSend(t, ws.OpText, []byte("to nobody"))
			a.recvUntil(t, ws.OpText, "to nobody")
			// Once the first has left, the uid is free again.
			first.Close()
			ts.waitMembers(t, 2)
			again := ts.join(t, "alice", "dup", authToken("alice", "dup", ""))
			ts.waitMembers(t, 3)
			again.mustSend(t, ws.OpText, []byte("back"))
			w.recvUntil(t, ws.OpText, "back")
		})
		t.Run("replace", func(t *testing.T) {
			ts := startServer(t, m, func(o *server.Options) { o.ReplaceDuplicate = true })
			w := ts.join(t, "witness", "dup")
			first := ts.join(t, "alice", "dup")
			ts.waitMembers(t, 2)
			second := ts.join(t, "alice", "dup")
			reason := first.expectClose(t, 1008, quickClose)
			if !strings.Contains(reason, "replaced") {
				t.Fatalf("replaced session closed with reason %q, want \"replaced\"", reason)
			}
			ts.waitMembers(t, 2)
			second.mustSend(t, ws.OpText, []byte("i am new"))
			w.recvUntil(t, ws.OpText, "i am new")
			w.mustSend(t, ws.OpText, []byte("hello second"))
			second.recvUntil(t, ws.OpText, "hello second")
		})
	})
}

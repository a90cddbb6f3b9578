// Package natstest runs real nats-server instances with JetStream for
// tests, as net/http/httptest runs HTTP servers: on loopback, on ports from
// mlestest.FreePort, with their state in t.TempDir(), and stopped by
// t.Cleanup when the test ends.
//
// Node runs one server inside the test process; it is quick to start and
// can be restarted on the same port and store, for tests of a client that
// must survive NATS going away and coming back:
//
//	s := natstest.Node(t)
//	nc, err := nats.Connect(s.URL())
//	...
//	s.Restart() // the same port, the same JetStream store
//
// Cluster runs nodes as separate nats-server processes, routed to each
// other, and returns once the JetStream meta group has a leader that sees
// every node: a node can then be killed (SIGKILL), stopped (SIGTERM) and
// started again, as in production:
//
//	ps := natstest.Cluster(t, 3)
//	flag := "--nats=" + natstest.URLs(ps)
//	ps[1].Kill()
//	...
//	ps[1].Start() // returns once it has rejoined the meta group
//
// The binary of Cluster is built from the nats-server module that go.mod
// requires (a tool of the module), not taken from the PATH: Debian's
// package is too old for the JetStream features the server uses.
//
// Logs: a Cluster process writes its log to a file in the test's temporary
// directory, and the tail of each is printed when the test fails. A Node
// logs nothing unless NATSTEST_LOG=1 is in the environment, which sends
// its log to standard error.
//
// The values returned are for the test's goroutine: their methods are not
// safe for concurrent use.
package natstest

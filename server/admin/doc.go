// Package admin is the operations side of an Mles server (SPEC 5): a
// net/http handler for a listener of its own (--admin ADDR), apart from the
// WebSocket port and never on the event loops.
//
//	h := admin.New(admin.Config{Server: srv, Options: &opts, Pprof: false})
//	stop, err := admin.Serve("127.0.0.1:9090", h, log)
//	...
//	_ = srv.Drain(ctx, drainTime) // /readyz answers 503 from the start
//	stop()
//
// The handler serves:
//
//   - /metrics: Prometheus text exposition. One collector asks the server
//     for a Metrics snapshot once per scrape (the snapshot runs a short
//     task on every event loop) and turns it into const metrics named
//     mles_*; the Go runtime and process collectors sit on the same
//     registry, which is the handler's own, not the global default one, so
//     that several servers in one process do not clash. Labels are fixed
//     sets (reasons, close codes, reactor numbers), never a uid, channel or
//     address.
//   - /healthz: 200 "ok" while the process serves HTTP at all.
//   - /readyz: 200 while Server.Ready, 503 otherwise; Drain turns it false
//     before it closes anything, so a load balancer stops sending new
//     clients at once.
//   - /varz: the same figures as /metrics, from one snapshot, as JSON (in
//     the manner of nats-server's /varz) with the version, start time,
//     uptime and the options worth showing (never the key of auth tokens).
//   - /: a status page without external assets that reads /varz every two
//     seconds and draws deliveries per second and connections.
//   - /debug/pprof/: net/http/pprof, only with Config.Pprof; 404 otherwise.
//
// Everything answers GET (and HEAD); every other path is 404.
package admin

// Command loadgen is the one load generator for every server in the Mles
// benchmarks: our server, the Mles-speaking peers in ../peers and Centrifugo
// (through -mode centrifugo). It follows ../../../shared/BENCHMARKS.md:
//
//   - Publishers are open-loop: each sends at a fixed rate from a random start
//     phase, and every payload carries the time it was *meant* to be sent, its
//     publisher id and sequence number. A publisher that stalls therefore cannot
//     hide the queueing it caused (coordinated omission): the receiver measures
//     receive time minus intended time.
//   - Only messages whose intended send time falls inside the measured window
//     (after -warmup, for -duration) are counted; expected deliveries are the
//     messages scheduled in the window times the receivers of their channel.
//     Messages that have not arrived by the end of the drain period are lost.
//   - Receivers are cheap: one goroutine per connection reads into a reused
//     64 KiB buffer and parses server frames by hand (frames split across reads
//     are carried over), with no allocation per message. The upgrade is done by
//     hand as well, and client frames are masked into reused buffers.
//   - CPU time of loadgen (getrusage) and of the server (/proc/PID/stat) are
//     sampled at the edges of the window; a run where loadgen used more than 0.9
//     of a core is marked client_bound.
//   - HTTP (-scenario static, and -http-rate beside a pub/sub scenario) uses a
//     hand-written HTTP/1.1 keep-alive client by default (-http-client raw: one
//     write per request, the response parsed in a reused buffer, no
//     allocation), sending Chromium's Accept-Encoding; net/http's client is
//     there for comparison (-http-client std). static is a closed loop on
//     -conns connections (requests/s of a saturated server). -http-rate is an
//     open loop, latency counted from each request's intended send time; beside
//     a pub/sub scenario it runs in a child loadgen process (static
//     -http-rate -start-at), aligned to the run's schedule, whose result and
//     CPU join the run's record.
//   - storm (wss only) is a reconnect storm after a server restart: -conns
//     clients, each with its own TLS session cache, join and keep their
//     session tickets; -restart-cmd restarts the server (and prints the new
//     PID, measured from then on); all reconnect at once (-dialers at a
//     time) and join. Recorded: time until all joined, connects/s, failures,
//     the share that resumed their TLS session, server and generator CPU
//     per reconnect (both phases), connect+join latency, and the server's
//     certificate key (params.cert: "ECDSA P-256", "RSA 2048").
//   - Several servers: -url takes a comma-separated list (pub/sub scenarios
//     but chat); member i joins server i mod n, so the publisher (member 0)
//     is on server 0. -scenario peered is the fan-out made for it: the
//     record has each server's receivers (delivered, latency, its process's
//     CPU with -server-pid P0,P1,...) and the receivers of every server but
//     the publisher's merged (remote: one peer hop away). -admin-url (one
//     http://host:port/metrics per server) records -metrics from each
//     server's Prometheus text before and after the window and after the
//     drain; -peer-sessions N waits, after the joins, until every server
//     reports N mles_peer_sessions. -scenario persist and persistpub are the
//     fan-out under their own names (1000 members; 10 members at 5000
//     msg/s), for our server with its history in memory and on disk.
//     -scrape-every D also reads every -admin-url every D from the
//     schedule's start to the window's end (as a Prometheus server would)
//     and records the scrapes answered and failed; -scenario admin is the
//     fan-out under its own name, for our server without and with --admin.
//     -scenario nats is the fan-out under its own name for servers joined
//     by a broker (ours on NATS, Centrifugo with its NATS broker) beside
//     the same servers alone: members spread over -url as in peered;
//     -broker-pid P,... adds the broker processes' CPU and RSS (a NATS
//     server) to the server side's and records each; -await name=min,...
//     waits, after the joins, until every -admin-url server reports each
//     metric at least its minimum (mles_nats_through_stream=1,...).
//   - Every pub/sub run records each CPU's busy time over the window
//     (/proc/stat), so that load from other processes on the pinned cores
//     shows (cpu_busy_s).
//
// Usage:
//
//	loadgen -url ws://127.0.0.1:PORT/ -scenario fanout|bigchannel|chat|idle|connect|history|slow|httpburst|persist|persistpub|admin \
//	        [-mode mles|centrifugo|rawtls] [-label NAME] [-http-rate R -http-url http://...] [-admin-url http://.../metrics [-scrape-every 1s]] [flags]
//	loadgen -url ws://127.0.0.1:P0/,ws://127.0.0.1:P1/ -scenario peered -server-pid PID0,PID1 \
//	        -admin-url http://127.0.0.1:A0/metrics,http://127.0.0.1:A1/metrics -peer-sessions 2 [flags]
//	loadgen -url ws://127.0.0.1:P0/,ws://127.0.0.1:P1/ -scenario nats -server-pid PID0,PID1 -broker-pid NATSPID \
//	        -admin-url http://127.0.0.1:A0/metrics,http://127.0.0.1:A1/metrics \
//	        -await mles_nats_through_stream=1,mles_nats_consumers=1 [flags]
//	loadgen -url http://127.0.0.1:PORT/path -scenario static [-conns 32] [flags]
//	loadgen -url wss://127.0.0.1:PORT/ -scenario storm -insecure [-conns 10000] [-dialers 64] \
//	        -restart-cmd RESTART [-server-pid PID] [flags]
//
// Each run appends one JSON object (see Result) to -out and prints a one-line
// summary on stderr. The exit status is non-zero only when the run could not be
// set up (for example a member could not connect), never for poor results.
//
// The payload format is ASCII so that it travels unchanged inside a Centrifugo
// JSON string:
//
//	~LG rrrr pppppp ssssssssss tttttttttttttttt xxxx...
//
// (without the spaces): a 3-byte marker, the run id, the publisher id, the
// sequence number and the intended send time in nanoseconds since the run's
// clock base, all fixed-width lower-case hex, padded to -payload bytes. Frames
// that do not carry this run's marker (stored join frames, replies) are ignored.
package main

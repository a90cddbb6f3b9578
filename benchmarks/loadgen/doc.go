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
//
// Usage:
//
//	loadgen -url ws://127.0.0.1:PORT/ -scenario fanout|bigchannel|chat|idle|connect|history|slow \
//	        [-mode mles|centrifugo|rawtls] [-label NAME] [flags]
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

package admin

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mles/mles/server"
)

// Source is what the handler reads: *server.Server. Both methods are safe
// from any goroutine.
type Source interface {
	// Metrics returns a snapshot of the server's figures (it runs a task
	// on every event loop and waits for it at most a second).
	Metrics(ctx context.Context) server.Metrics
	// Ready reports whether the server accepts connections.
	Ready() bool
}

var _ Source = (*server.Server)(nil)

// namespace prefixes every metric of the server itself.
const namespace = "mles"

// metric is one mles_* metric: its descriptor and how it reads a snapshot.
type metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func newMetric(name, help string, typ prometheus.ValueType, labels ...string) metric {
	return metric{prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil), typ}
}

// collector is the prometheus.Collector of a server: Collect takes one
// Metrics snapshot per scrape and emits every metric from it, so the
// figures of one scrape are consistent with each other and a scrape costs
// the event loops one task each, whatever the number of metrics.
type collector struct {
	src      Source
	version  string
	reactors int // event loops configured; 0 when unknown

	build, connections, accepted, refused, hsFailures, hsInFlight   metric
	channels, members, messagesIn, messagesInBytes                  metric
	deliveries, deliveriesBytes, slow, closes, closeCodes, dropped  metric
	historyMessages, historyBytes, reactorConns, draining, snapshot metric
	peerSessions, peerIn, peerOut, peerDuplicates                   metric
	storeQueued, storeWritten, storeDropped, storeBehind, storeDisk metric
	storeLost                                                       metric
	natsConnected, natsThrough, natsQueued, natsConsumers           metric
	natsPublished, natsAcked, natsFailed, natsReceived              metric
	natsLocalOnly, natsQueueFull, natsTooLarge, natsGaps            metric
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(src Source, version string, reactors int) *collector {
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	return &collector{
		src:      src,
		version:  version,
		reactors: reactors,
		build:    newMetric("build_info", "Always 1; the label version is the running build's.", gauge, "version"),
		connections: newMetric("connections",
			"Connections open now, in any state (TLS handshake, upgrade, header, member, closing).", gauge),
		accepted: newMetric("connections_accepted_total",
			"Connections admitted at accept since start.", counter),
		refused: newMetric("connections_refused_total",
			"Connections refused at accept since start, by reason (max-conns, rate-limit, max-conns-per-ip, not-trusted-proxy).", counter, "reason"),
		hsFailures: newMetric("tls_handshake_failures_total",
			"TLS connections closed before their handshake was done, by close reason.", counter, "reason"),
		hsInFlight: newMetric("tls_handshakes_in_flight",
			"TLS handshakes running now.", gauge),
		channels: newMetric("channels",
			"Channels in the registry now, including those without members that keep their history.", gauge),
		members: newMetric("members",
			"Channel memberships now: connections that sent a valid header frame.", gauge),
		messagesIn: newMetric("messages_in_total",
			"Messages published by members since start.", counter),
		messagesInBytes: newMetric("messages_in_bytes_total",
			"Frame bytes of the messages published by members since start.", counter),
		deliveries: newMetric("deliveries_total",
			"Messages (live, history and join frames) written to members since start.", counter),
		deliveriesBytes: newMetric("deliveries_bytes_total",
			"Frame bytes of the deliveries since start.", counter),
		slow: newMetric("slow_consumer_closes_total",
			"Members closed as slow consumers since start.", counter),
		closes: newMetric("closes_total",
			"Connections closed since start, by why they ended.", counter, "reason"),
		closeCodes: newMetric("close_codes_sent_total",
			"WebSocket close frames sent since start, by close code.", counter, "code"),
		dropped: newMetric("messages_dropped_total",
			"Messages not delivered or not accepted since start, by reason (slow_consumer, lapped, too_large, invalid_utf8).", counter, "reason"),
		historyMessages: newMetric("history_messages",
			"Messages and join frames the channels keep as history now.", gauge),
		historyBytes: newMetric("history_bytes",
			"Frame bytes of the history kept now.", gauge),
		reactorConns: newMetric("reactor_connections",
			"Connections owned by each event loop (reactor) now.", gauge, "reactor"),
		draining: newMetric("draining",
			"1 from the start of a drain (lame duck) or shutdown, else 0.", gauge),
		peerSessions: newMetric("peer_sessions",
			"Peer sessions (--peer, either side) exchanging messages now.", gauge),
		peerIn: newMetric("peer_messages_in_total",
			"Messages accepted from peer sessions since start.", counter),
		peerOut: newMetric("peer_messages_out_total",
			"Messages sent to peer sessions since start (history resync and live).", counter),
		peerDuplicates: newMetric("peer_duplicates_total",
			"Messages a peer sent that the channel already had, dropped (loop prevention) since start.", counter),
		storeQueued: newMetric("history_store_queued",
			"History records queued for the store's writer now (--history-dir).", gauge),
		storeWritten: newMetric("history_store_written_total",
			"History records written to disk since start.", counter),
		storeDropped: newMetric("history_store_dropped_total",
			"History records not stored because the writer's queue was full (the writer is behind).", counter),
		storeBehind: newMetric("history_store_behind",
			"1 while the store's writer is behind (its queue was full), else 0.", gauge),
		storeDisk: newMetric("history_store_disk_bytes",
			"Bytes the history store takes on disk.", gauge),
		storeLost: newMetric("history_store_lost",
			"History records known to be on disk before the start that the store could not load (a damaged log).", gauge),
		natsConnected: newMetric("nats_connected",
			"1 while the connection to NATS (--nats) is up.", gauge),
		natsThrough: newMetric("nats_through_stream",
			"1 while local messages go through the JetStream stream (connected and acknowledged); 0: delivered locally first.", gauge),
		natsQueued: newMetric("nats_queued",
			"Messages waiting to be published to NATS.", gauge),
		natsConsumers: newMetric("nats_consumers",
			"Channel consumers on the stream (channels with local members).", gauge),
		natsPublished: newMetric("nats_published_total",
			"Messages and join frames handed to NATS since start (those sent again included).", counter),
		natsAcked: newMetric("nats_acked_total",
			"Publishes JetStream acknowledged since start.", counter),
		natsFailed: newMetric("nats_failed_total",
			"Publishes JetStream did not acknowledge since start (each is sent again).", counter),
		natsReceived: newMetric("nats_received_total",
			"Messages taken from the stream into channels since start.", counter),
		natsLocalOnly: newMetric("nats_local_first_total",
			"Messages delivered to local members before the stream had them (NATS unreachable) since start.", counter),
		natsQueueFull: newMetric("nats_queue_full_total",
			"Messages not queued for NATS because the queue was full (local members only) since start.", counter),
		natsTooLarge: newMetric("nats_too_large_total",
			"Messages over NATS's max_payload (local members only) since start.", counter),
		natsGaps: newMetric("nats_gaps_total",
			"Times a channel missed live messages (NATS dropped them, or the connection was down) and read them from the stream, since start.", counter),
		snapshot: newMetric("scrape_snapshot_seconds",
			"How long the scrape took to collect the snapshot from the event loops.", gauge),
	}
}

// all lists the collector's metrics for Describe.
func (c *collector) all() []metric {
	return []metric{c.build, c.connections, c.accepted, c.refused, c.hsFailures, c.hsInFlight,
		c.channels, c.members, c.messagesIn, c.messagesInBytes, c.deliveries, c.deliveriesBytes,
		c.slow, c.closes, c.closeCodes, c.dropped, c.historyMessages, c.historyBytes,
		c.reactorConns, c.draining, c.snapshot, c.peerSessions, c.peerIn, c.peerOut, c.peerDuplicates,
		c.storeQueued, c.storeWritten, c.storeDropped, c.storeBehind, c.storeDisk, c.storeLost,
		c.natsConnected, c.natsThrough, c.natsQueued, c.natsConsumers, c.natsPublished, c.natsAcked,
		c.natsFailed, c.natsReceived, c.natsLocalOnly, c.natsQueueFull, c.natsTooLarge, c.natsGaps}
}

// Describe sends every descriptor: the registry then checks names and
// label sets once, at registration.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.all() {
		ch <- m.desc
	}
}

// Collect takes one snapshot and emits every metric from it.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	m := c.src.Metrics(context.Background())
	took := time.Since(start)
	emit := func(x metric, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(x.desc, x.typ, v, labels...)
	}
	emit(c.build, 1, c.version)
	emit(c.connections, float64(m.Conns))
	emit(c.accepted, float64(m.Accepted))
	for reason, n := range m.Refused {
		emit(c.refused, float64(n), reason)
	}
	for reason, n := range m.HandshakeFailures {
		emit(c.hsFailures, float64(n), reason)
	}
	emit(c.hsInFlight, float64(m.Handshakes))
	emit(c.channels, float64(m.Channels))
	emit(c.members, float64(m.Members))
	emit(c.messagesIn, float64(m.MessagesIn))
	emit(c.messagesInBytes, float64(m.BytesIn))
	emit(c.deliveries, float64(m.Deliveries))
	emit(c.deliveriesBytes, float64(m.BytesOut))
	emit(c.slow, float64(m.SlowConsumers))
	for reason, n := range m.Closes {
		emit(c.closes, float64(n), reason)
	}
	for code, n := range m.CloseCodes {
		emit(c.closeCodes, float64(n), strconv.Itoa(code))
	}
	for reason, n := range m.Dropped {
		emit(c.dropped, float64(n), reason)
	}
	emit(c.historyMessages, float64(m.HistoryMessages))
	emit(c.historyBytes, float64(m.HistoryBytes))
	for i, n := range reactorConns(m, c.reactors) {
		emit(c.reactorConns, float64(n), strconv.Itoa(i))
	}
	emit(c.draining, boolFloat(m.Draining))
	emit(c.peerSessions, float64(m.PeerSessions))
	emit(c.peerIn, float64(m.PeerIn))
	emit(c.peerOut, float64(m.PeerOut))
	emit(c.peerDuplicates, float64(m.PeerDuplicates))
	if st := m.Store; st != nil { // only with --history-dir
		emit(c.storeQueued, float64(st.Queued))
		emit(c.storeWritten, float64(st.Written))
		emit(c.storeDropped, float64(st.Dropped))
		emit(c.storeBehind, boolFloat(st.Behind))
		emit(c.storeDisk, float64(st.DiskBytes))
		emit(c.storeLost, float64(st.Lost))
	}
	if n := m.NATS; n != nil { // only with --nats
		emit(c.natsConnected, boolFloat(n.Connected))
		emit(c.natsThrough, boolFloat(n.Through))
		emit(c.natsQueued, float64(n.Queued))
		emit(c.natsConsumers, float64(n.Consumers))
		emit(c.natsPublished, float64(n.Published))
		emit(c.natsAcked, float64(n.Acked))
		emit(c.natsFailed, float64(n.Failed))
		emit(c.natsReceived, float64(n.Received))
		emit(c.natsLocalOnly, float64(n.LocalOnly))
		emit(c.natsQueueFull, float64(n.QueueFull))
		emit(c.natsTooLarge, float64(n.TooLarge))
		emit(c.natsGaps, float64(n.Gaps))
	}
	emit(c.snapshot, took.Seconds())
}

// reactorConns lists the connections of each event loop, numbered as the
// server numbers them (in the order of their first connection). The
// server knows a loop only from its first connection on: the loops it has
// not seen yet, up to the reactors configured, hold none.
func reactorConns(m server.Metrics, reactors int) []int {
	n := make([]int, max(len(m.Loops), reactors))
	for i, l := range m.Loops {
		n[i] = l.Conns
	}
	return n
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

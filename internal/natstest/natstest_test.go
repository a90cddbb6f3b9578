package natstest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connect returns a JetStream client through url, closed when the test
// ends.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestNodeRestart: a message in a file-stored stream is there again after
// the server restarts on the same port and store.
func TestNodeRestart(t *testing.T) {
	s := Node(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	js := connect(t, s.URL())
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "t.one", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetMsg(ctx, ack.Sequence); err != nil || string(m.Data) != "one" {
		t.Fatalf("before restart: GetMsg(%d) = %v, %v", ack.Sequence, m, err)
	}

	url := s.URL()
	s.Restart()
	if s.URL() != url {
		t.Fatalf("URL %s after restart, was %s", s.URL(), url)
	}
	js = connect(t, s.URL())
	st, err = js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil || string(m.Data) != "one" || m.Subject != "t.one" {
		t.Fatalf("after restart: GetMsg(%d) = %+v, %v", ack.Sequence, m, err)
	}
}

// TestClusterNodeLoss: an R3 stream keeps taking messages with one of
// three nodes killed, and the node, started again, serves all of them in
// order.
func TestClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three nats-server processes")
	}
	start := time.Now()
	ps := Cluster(t, 3)
	t.Logf("cluster ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	js0 := connect(t, ps[0].URL())
	if _, err := js0.CreateStream(ctx, jetstream.StreamConfig{
		Name: "R3", Subjects: []string{"r3.>"}, Storage: jetstream.FileStorage, Replicas: 3,
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		publish(ctx, t, js0, i)
	}

	ps[1].Kill()
	start = time.Now()
	js2 := connect(t, ps[2].URL())
	for i := 100; i < 200; i++ {
		publish(ctx, t, js2, i)
	}
	t.Logf("100 messages with n1 killed in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	ps[1].Start()
	t.Logf("n1 back in the meta group in %v", time.Since(start).Round(time.Millisecond))
	// n1's replica of the stream catches up: the stream's leader sees it
	// current, without lag.
	poll.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := js0.Stream(ctx, "R3")
		if err != nil {
			return err
		}
		ci := st.CachedInfo().Cluster
		if ci == nil {
			return errors.New("no cluster info")
		}
		for _, r := range ci.Replicas {
			if r.Name == ps[1].Name() && r.Current && r.Lag == 0 {
				return nil
			}
		}
		return fmt.Errorf("n1 not a current replica: leader %s, replicas %+v", ci.Leader, ci.Replicas)
	})

	js1 := connect(t, ps[1].URL())
	cons, err := js1.CreateOrUpdateConsumer(ctx, "R3", jetstream.ConsumerConfig{
		Durable: "reader", AckPolicy: jetstream.AckNonePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; {
		batch, err := cons.Fetch(200-i, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if want := payload(i); string(m.Data()) != want || md.Sequence.Stream != uint64(i+1) {
				t.Fatalf("message %d: %q at stream sequence %d, want %q at %d", i, m.Data(), md.Sequence.Stream, want, i+1)
			}
			i++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("fetch after %d messages: %v", i, err)
		}
	}
}

func payload(i int) string { return fmt.Sprintf("m%03d", i) }

// publish sends message i to the R3 stream and waits for its
// acknowledgement at stream sequence i+1. Right after a node is killed the
// stream may be electing a new leader: a publish that fails is sent again
// with the same message id, which the stream's duplicate window drops if
// the first one was stored after all.
func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, i int) {
	t.Helper()
	var ack *jetstream.PubAck
	poll.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		ack, err = js.Publish(pctx, "r3.m", []byte(payload(i)), jetstream.WithMsgID(payload(i)))
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		return nil
	})
	if ack.Sequence != uint64(i+1) {
		t.Fatalf("publish %d: acknowledged at stream sequence %d, want %d", i, ack.Sequence, i+1)
	}
}

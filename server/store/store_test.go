package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/mles/mles/internal/poll"
)

// open opens a store in dir (a new temporary one when empty) and closes it at cleanup.
func open(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tWriter sends log lines to the test's log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// reopen closes s and opens its directory again with o.
func reopen(t testing.TB, s *Store, o Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.Dir = s.o.Dir
	return open(t, o)
}

// load flushes s and returns LoadAll's result.
func load(t testing.TB, s *Store) map[string][]Record {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string][]Record{}
	err := s.LoadAll(func(channel string, recs []Record) {
		if _, dup := got[channel]; dup {
			t.Errorf("channel %q loaded twice", channel)
		}
		got[channel] = recs
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// rec makes a record whose payload names it.
func rec(order uint64, join bool, text string) Record {
	return Record{Order: order, Origin: 0xfeedface_00000000 | order, Seq: order + 1, Op: OpText, Join: join, Payload: []byte(text)}
}

// payloads lists the payloads of recs, to compare.
func payloads(recs []Record) string {
	var b bytes.Buffer
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.Write(r.Payload)
	}
	return b.String()
}

func mustAppend(t testing.TB, s *Store, channel string, recs ...Record) {
	t.Helper()
	for _, r := range recs {
		if !s.Append(channel, r) {
			t.Fatalf("Append(%q, %d) = false", channel, r.Order)
		}
	}
}

func TestOrderKept(t *testing.T) {
	s := open(t, Options{})
	// Joins share an Order (the head when they were stored) and keep their Append order;
	// a record appended late with a smaller Order goes to its place.
	mustAppend(t, s, "c",
		rec(1, false, "d1"),
		rec(2, true, "j2a"),
		rec(2, true, "j2b"),
		rec(2, false, "d2"),
		rec(4, false, "d4"),
		rec(3, false, "d3"),
		rec(2, true, "j2c"),
	)
	want := "d1 j2a j2b d2 j2c d3 d4"
	if got := payloads(load(t, s)["c"]); got != want {
		t.Fatalf("order: got %q, want %q", got, want)
	}
	// The arrival counter goes on after a restart: a tie with a record stored before it
	// still comes after it.
	s = reopen(t, s, Options{})
	mustAppend(t, s, "c", rec(2, true, "j2d"))
	want = "d1 j2a j2b d2 j2c j2d d3 d4"
	got := load(t, s)["c"]
	if payloads(got) != want {
		t.Fatalf("order after reopen: got %q, want %q", payloads(got), want)
	}
	// Every field comes back.
	r := got[0]
	if w := rec(1, false, "d1"); r.Order != w.Order || r.Origin != w.Origin || r.Seq != w.Seq || r.Op != w.Op || r.Join {
		t.Fatalf("fields: got %+v, want %+v", r, w)
	}
	if !got[1].Join {
		t.Fatalf("join flag lost: %+v", got[1])
	}
}

func TestChannelNames(t *testing.T) {
	s := open(t, Options{})
	// Names whose bytes could run into each other without the length prefix, the empty
	// name, and names of 0xff bytes (the range end of Drop carries over them).
	names := []string{"", "a", "ab", "a\x00", "\x01a", "\xff", "\xff\xff", "\x02ab", string(make([]byte, 300))}
	for i, n := range names {
		mustAppend(t, s, n, rec(uint64(i), false, fmt.Sprintf("m%d", i)))
	}
	if !s.Drop("\xff") {
		t.Fatal("Drop = false")
	}
	got := load(t, reopen(t, s, Options{}))
	for i, n := range names {
		want := fmt.Sprintf("m%d", i)
		if n == "\xff" {
			want = ""
		}
		if p := payloads(got[n]); p != want {
			t.Errorf("channel %q: got %q, want %q", n, p, want)
		}
	}
	if len(got) != len(names)-1 {
		t.Errorf("got %d channels, want %d", len(got), len(names)-1)
	}
}

func TestCaps(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		maxBytes int64
		recs     []Record
		want     string
	}{
		{
			// Data and joins are counted apart: three of each stay.
			name: "limit", limit: 3,
			recs: []Record{rec(1, false, "d1"), rec(1, true, "j1"), rec(2, false, "d2"), rec(2, true, "j2"),
				rec(3, false, "d3"), rec(3, true, "j3"), rec(4, true, "j4"), rec(4, false, "d4"), rec(5, false, "d5")},
			want: "j2 d3 j3 j4 d4 d5", // key order: Order, then Append order
		},
		{
			// Joins alone past the limit drop only joins.
			name: "joins", limit: 2,
			recs: []Record{rec(1, false, "d1"), rec(1, true, "ja"), rec(1, true, "jb"), rec(1, true, "jc")},
			want: "d1 jb jc",
		},
		{
			// The byte cap drops the oldest of either kind: 4 payloads of 10 bytes in 25.
			name: "bytes", limit: 100, maxBytes: 25,
			recs: []Record{rec(1, true, "j1-456789a"), rec(2, false, "d2-456789a"), rec(3, true, "j3-456789a"), rec(4, false, "d4-456789a")},
			want: "j3-456789a d4-456789a",
		},
		{
			// A record larger than the cap stays alone, as the newest.
			name: "huge", limit: 100, maxBytes: 5,
			recs: []Record{rec(1, false, "abc"), rec(2, false, "0123456789")},
			want: "0123456789",
		},
		{
			// Both caps at once: the limit drops d1, the bytes then d2 and j3.
			name: "both", limit: 2, maxBytes: 5,
			recs: []Record{rec(1, false, "d1"), rec(2, false, "d2"), rec(3, true, "j3"), rec(4, false, "d4"), rec(5, true, "j5")},
			want: "d4 j5",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Limit: tt.limit, MaxBytes: tt.maxBytes}
			s := open(t, o)
			mustAppend(t, s, "c", tt.recs...)
			if got := payloads(load(t, s)["c"]); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			// The index rebuilt at Open agrees with what was kept: one more record
			// still drops exactly one of its kind.
			s = reopen(t, s, o)
			if got := payloads(load(t, s)["c"]); got != tt.want {
				t.Fatalf("after reopen: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCapsLoweredAtOpen(t *testing.T) {
	s := open(t, Options{Limit: 10})
	for i := range 10 {
		mustAppend(t, s, "c", rec(uint64(i), false, fmt.Sprint(i)))
	}
	s = reopen(t, s, Options{Limit: 4})
	if got := payloads(load(t, s)["c"]); got != "6 7 8 9" {
		t.Fatalf("limit lowered: got %q", got)
	}
	s = reopen(t, s, Options{Limit: 10})
	if got := payloads(load(t, s)["c"]); got != "6 7 8 9" {
		t.Fatalf("limit raised again: got %q (trimmed records must be gone)", got)
	}
	mustAppend(t, s, "c", rec(10, false, "10"))
	if got := payloads(load(t, s)["c"]); got != "6 7 8 9 10" {
		t.Fatalf("append after reopen: got %q", got)
	}
}

func TestDrop(t *testing.T) {
	s := open(t, Options{})
	mustAppend(t, s, "a", rec(1, false, "a1"), rec(2, false, "a2"))
	mustAppend(t, s, "b", rec(1, false, "b1"))
	// Drop is queued in order with the appends around it.
	if !s.Drop("a") {
		t.Fatal("Drop = false")
	}
	mustAppend(t, s, "a", rec(3, false, "a3"))
	got := load(t, s)
	if payloads(got["a"]) != "a3" || payloads(got["b"]) != "b1" {
		t.Fatalf("got a=%q b=%q", payloads(got["a"]), payloads(got["b"]))
	}
	if !s.Drop("b") || !s.Drop("nothing stored") {
		t.Fatal("Drop = false")
	}
	s = reopen(t, s, Options{})
	got = load(t, s)
	if len(got) != 1 || payloads(got["a"]) != "a3" {
		t.Fatalf("after reopen: %v", got)
	}
	if n := s.Stats().Channels; n != 1 {
		t.Fatalf("Stats.Channels = %d, want 1", n)
	}
}

func TestReopenKeepsAll(t *testing.T) {
	o := Options{Sync: SyncPolicy{Mode: SyncNone}}
	s := open(t, o)
	for c := range 50 {
		for i := range 5 {
			r := rec(uint64(i), i == 2, fmt.Sprintf("%d-%d", c, i))
			r.Op = OpBinary
			mustAppend(t, s, fmt.Sprint("ch", c), r)
		}
	}
	// Close alone (no Flush) writes everything.
	s = reopen(t, s, o)
	got := load(t, s)
	if len(got) != 50 {
		t.Fatalf("got %d channels, want 50", len(got))
	}
	for c := range 50 {
		want := fmt.Sprintf("%d-0 %d-1 %d-2 %d-3 %d-4", c, c, c, c, c)
		if p := payloads(got[fmt.Sprint("ch", c)]); p != want {
			t.Fatalf("channel %d: got %q, want %q", c, p, want)
		}
	}
	if st := s.Stats(); st.Channels != 50 || st.DiskBytes <= 0 {
		t.Fatalf("Stats after reopen: %+v", st)
	}
}

func TestFlush(t *testing.T) {
	for _, mode := range []string{SyncAlways, "1h", SyncNone} {
		t.Run(mode, func(t *testing.T) {
			p, err := ParseSync(mode)
			if err != nil {
				t.Fatal(err)
			}
			s := open(t, Options{Sync: p})
			for i := range 100 {
				mustAppend(t, s, "c", rec(uint64(i), false, "x"))
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Everything appended before Flush is written and fsynced, whatever the
			// policy (an hour's interval would not have fsynced yet).
			st := s.Stats()
			if st.Written != 100 || st.Appended != 100 || st.Syncs == 0 {
				t.Fatalf("after Flush: %+v", st)
			}
			// A Flush with nothing new does not fsync again (except per batch).
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st2 := s.Stats(); st2.Syncs != st.Syncs {
				t.Fatalf("idle Flush fsynced: %d -> %d", st.Syncs, st2.Syncs)
			}
		})
	}
}

func TestFlushContext(t *testing.T) {
	s := open(t, Options{Queue: 1})
	// Stall the writer in its next batch, then fill the queue.
	s.mu.Lock()
	mustAppend(t, s, "c", rec(1, false, "taken by the writer"))
	poll.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s.Append("c", rec(2, false, "queued")) {
			return nil
		}
		return errors.New("queue never had room")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Flush(ctx)
	s.mu.Unlock()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush on a stalled writer = %v, want %v", err, context.DeadlineExceeded)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := payloads(load(t, s)["c"]); got != "taken by the writer queued" {
		t.Fatalf("got %q", got)
	}
}

func TestIntervalSync(t *testing.T) {
	s := open(t, Options{Sync: SyncPolicy{Mode: SyncInterval, Interval: 10 * time.Millisecond}})
	mustAppend(t, s, "c", rec(1, false, "x"))
	// The interval fsyncs without a Flush.
	poll.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if st := s.Stats(); st.Syncs == 0 || st.Written != 1 {
			return fmt.Errorf("no fsync yet: %+v", st)
		}
		return nil
	})
}

func TestQueueFull(t *testing.T) {
	var logs bytes.Buffer
	s := open(t, Options{Queue: 4, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	// Stall the writer: it takes what is queued and then waits for mu.
	s.mu.Lock()
	ok, dropped := 0, 0
	for i := range 100 {
		if s.Append("c", rec(uint64(i), false, "x")) {
			ok++
		} else {
			dropped++
		}
	}
	st := s.Stats()
	s.mu.Unlock()
	if dropped == 0 || ok < 4 {
		t.Fatalf("queued %d, dropped %d", ok, dropped)
	}
	if st.Dropped != uint64(dropped) || st.Appended != uint64(ok) || !st.Behind {
		t.Fatalf("Stats = %+v, want Dropped %d, Appended %d, Behind", st, dropped, ok)
	}
	if n := bytes.Count(logs.Bytes(), []byte("writer is behind")); n != 1 {
		t.Fatalf("%d 'behind' log lines for %d drops, want 1 (rate-limited):\n%s", n, dropped, logs.String())
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.Written != uint64(ok) || st.Behind {
		t.Fatalf("after Flush: %+v, want Written %d and not Behind", st, ok)
	}
}

func TestAppendNoAlloc(t *testing.T) {
	s := open(t, Options{Queue: 4096})
	r := rec(1, false, "payload")
	// Hold the writer so that its own allocations do not count.
	s.mu.Lock()
	mustAppend(t, s, "c", r)
	if n := testing.AllocsPerRun(1000, func() { s.Append("c", r) }); n != 0 {
		s.mu.Unlock()
		t.Fatalf("Append allocates %v times per call", n)
	}
	// Queue full: the drop path allocates nothing either (past its first log line).
	for s.Append("c", r) {
	}
	n := testing.AllocsPerRun(1000, func() { s.Append("c", r) })
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("a dropping Append allocates %v times per call", n)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, Options{})
	mustAppend(t, s, "c", rec(1, false, "x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if s.Append("c", rec(2, false, "y")) || s.Drop("c") {
		t.Fatal("Append or Drop after Close = true")
	}
	if err := s.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}
	if err := s.LoadAll(func(string, []Record) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("LoadAll after Close = %v", err)
	}
	if st := s.Stats(); st.Written != 1 || st.Dropped != 1 {
		t.Fatalf("Stats after Close = %+v", st)
	}
}

func TestManyChannels(t *testing.T) {
	const channels = 10_000
	s := open(t, Options{Sync: SyncPolicy{Mode: SyncNone}})
	fill(t, s, channels, 3)
	start := time.Now()
	s = reopen(t, s, Options{})
	n := 0
	if err := s.LoadAll(func(_ string, recs []Record) { n += len(recs) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("open + LoadAll of %d channels x 3 records: %v", channels, time.Since(start))
	if n != channels*3 {
		t.Fatalf("loaded %d records, want %d", n, channels*3)
	}
}

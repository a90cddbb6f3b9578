package ring

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// item is one entry of a history in the channel's order: a message (by sequence) or a join.
type item struct {
	join bool
	id   int // sequence of a message, index of a join in publication order
}

func (i item) String() string {
	if i.join {
		return fmt.Sprintf("j%d", i.id)
	}
	return fmt.Sprintf("m%d", i.id)
}

// replayed lists what a joiner with span sp delivers, in order, as the server's drain does:
// the joins with Pos <= c before message c, the rest after the last message.
func replayed(t *testing.T, r *Ring, sp Span, joinIDs map[*Message]int) []item {
	t.Helper()
	var out []item
	next := 0
	for c := sp.Start; ; c++ {
		for next < len(sp.Joins) && sp.Joins[next].Pos <= c {
			out = append(out, item{true, joinIDs[sp.Joins[next].Msg]})
			next++
		}
		if c >= sp.End {
			break
		}
		if _, st := r.Read(c); st != Ready {
			t.Fatalf("span %d..%d: message %d is %v", sp.Start, sp.End, c, st)
		}
		out = append(out, item{false, int(c)})
	}
	if next != len(sp.Joins) {
		t.Fatalf("joins beyond End: %+v", sp.Joins[next:])
	}
	return out
}

// TestHistorySpanMergesJoins checks the merged history: stored joins take their place between
// messages, the history limit and the byte cap count both, and the span is a contiguous tail of
// the channel's one order.
func TestHistorySpanMergesJoins(t *testing.T) {
	// A script: 'm' publishes a 10-byte message, 'j' stores a 10-byte join.
	tests := []struct {
		name   string
		cfg    Config
		script string
		want   string // the replay, as items
	}{
		// Joins only: all of them, in order.
		{"joins only", Config{History: 5}, "jjj", "[j0 j1 j2]"},
		// Interleaved, under the limit: everything in publication order.
		{"interleaved", Config{History: 10}, "jmmjmj", "[j0 m0 m1 j1 m2 j2]"},
		// The limit counts joins too: the newest 4 items.
		{"limit", Config{History: 4}, "jmmjmj", "[m1 j1 m2 j2]"},
		// A limit that ends on a join before a message.
		{"limit on a join", Config{History: 3}, "mjmmj", "[m1 m2 j1]"},
		// The byte cap counts joins too (40 bytes: 4 items). The oldest are evicted as well.
		{"bytes", Config{History: 10, MaxBytes: 40}, "jmjmjm", "[j1 m1 j2 m2]"},
		// A message over the cap ends the history: nothing older is in it.
		{"bytes, large message", Config{History: 10, MaxBytes: 40}, "jjM", "[]"},
		// More joins than the limit: the log keeps only the newest.
		{"join log cap", Config{History: 2}, "jjjjj", "[j3 j4]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.cfg)
			ids := map[*Message]int{}
			nj := 0
			for _, op := range tc.script {
				m := msg(10, 0)
				if op == 'M' {
					m = msg(50, 0)
				}
				if op == 'j' {
					ids[m] = nj
					nj++
					r.PublishJoin(m)
				} else {
					r.Publish(m)
				}
			}
			sp := r.HistorySpan()
			got := fmt.Sprint(replayed(t, r, sp, ids))
			if got != tc.want {
				t.Fatalf("replay %s, want %s (span %d..%d, %d joins)", got, tc.want, sp.Start, sp.End, len(sp.Joins))
			}
			if sp.Len() != len(slices.DeleteFunc([]byte(got), func(b byte) bool { return b != 'm' && b != 'j' })) {
				t.Fatalf("Len()=%d for %s", sp.Len(), got)
			}
			checkAccounting(t, r)
		})
	}
}

// TestJoinBurstNeverLaps stores many more joins than the ring has slots while a reader waits at
// the head: join frames never take a slot, so the reader is not lapped and reads on.
func TestJoinBurstNeverLaps(t *testing.T) {
	r := New(Config{Size: 16, History: 4})
	r.Publish(msg(1, 0))
	cursor := r.Head()
	for range 15000 {
		r.PublishJoin(msg(30, 0))
	}
	if r.Head() != cursor || r.Tail() != 0 {
		t.Fatalf("joins moved the ring: head %d tail %d", r.Head(), r.Tail())
	}
	m := msg(1, 0)
	r.Publish(m)
	mustRead(t, r, cursor, m)
	if r.Joins() != 4 || r.Bytes() != 4*30+2 {
		t.Fatalf("Joins=%d Bytes=%d; want 4 joins (the history limit), 122 bytes", r.Joins(), r.Bytes())
	}
	checkAccounting(t, r)
	r.Release()
	if r.Joins() != 0 || r.Bytes() != 0 {
		t.Fatalf("after Release: Joins=%d Bytes=%d", r.Joins(), r.Bytes())
	}
}

// TestMarkHoldsEviction: the byte caps never evict a message at or above a mark (a live reader
// has not read it), however far over the caps; Trim evicts it once the mark moves past.
func TestMarkHoldsEviction(t *testing.T) {
	b := NewBudget(100)
	other := New(Config{Budget: b})
	other.Publish(msg(100, 0)) // the budget is full with another channel's history
	r := New(Config{History: 10, MaxBytes: 1000, Budget: b})
	mk := r.NewMark()
	mk.Set(r.Head())
	var pub []*Message
	for range 5 {
		m := msg(30, 0)
		r.Publish(m)
		pub = append(pub, m)
	}
	for i, m := range pub {
		mustRead(t, r, uint64(i), m) // unread: held back although the budget is over
	}
	if b.Used() != 250 {
		t.Fatalf("Used=%d, want 250", b.Used())
	}
	mk.Set(3) // the reader read 0..2
	r.Trim()
	for i := range 3 {
		mustStatus(t, r, uint64(i), Lost)
	}
	mustRead(t, r, 3, pub[3])
	mk.Set(NoMark) // the reader left
	r.Trim()
	if r.Bytes() != 0 || b.Used() != 100 {
		t.Fatalf("Bytes=%d Used=%d; want 0, 100", r.Bytes(), b.Used())
	}
	checkAccounting(t, r)
}

// TestJoinFrameKeepsMarkedHistory is defect 7 of issue 8: a history that fits its cap, and a
// joiner whose own join frame then pushes the channel over the cap. With the joiner's mark at
// its span, the history it replays stays whole; once it has read it, the oldest goes.
func TestJoinFrameKeepsMarkedHistory(t *testing.T) {
	r := New(Config{History: 200, MaxBytes: 1000})
	for range 10 {
		r.Publish(msg(98, 0)) // 980 bytes: fits
	}
	sp := r.HistorySpan()
	if sp.Start != 0 || sp.End != 10 {
		t.Fatalf("span %d..%d, want 0..10", sp.Start, sp.End)
	}
	mk := r.NewMark()
	mk.Lower(sp.Start)
	r.PublishJoin(msg(40, 0)) // 1020 bytes
	for seq := range uint64(10) {
		mustStatus(t, r, seq, Ready)
	}
	mk.Set(sp.End)
	r.Trim()
	mustStatus(t, r, 0, Lost)
	mustStatus(t, r, 1, Ready)
	if r.Bytes() != 9*98+40 {
		t.Fatalf("Bytes=%d after the trim", r.Bytes())
	}
	// A single message of exactly the cap is history.
	one := New(Config{History: 5, MaxBytes: 100})
	one.Publish(msg(100, 0))
	if sp := one.HistorySpan(); sp.Start != 0 || sp.End != 1 {
		t.Fatalf("a message of exactly the cap: span %d..%d, want 0..1", sp.Start, sp.End)
	}
}

// TestMarkHoldBound: marks hold back at most Hold bytes beyond MaxBytes; past that the oldest go
// whatever the marks say, and the reader at the mark sees Lost (a slow consumer).
func TestMarkHoldBound(t *testing.T) {
	r := New(Config{History: 100, MaxBytes: 100, Hold: 50})
	mk := r.NewMark()
	mk.Set(0) // a reader that never reads
	for range 5 {
		r.Publish(msg(30, 0)) // 150 bytes: within MaxBytes+Hold, all kept
	}
	mustStatus(t, r, 0, Ready)
	r.Publish(msg(30, 0)) // 180 > 150: the marks no longer count
	for seq := range uint64(3) {
		mustStatus(t, r, seq, Lost) // trimmed back within the cap
	}
	mustStatus(t, r, 3, Ready)
	if r.Bytes() != 90 {
		t.Fatalf("Bytes=%d, want 90 (back within the cap)", r.Bytes())
	}
	// Hold defaults to MaxBytes.
	d := New(Config{MaxBytes: 100})
	d.NewMark().Set(0)
	for range 6 {
		d.Publish(msg(30, 0)) // 180 <= 200
	}
	mustStatus(t, d, 0, Ready)
	d.Publish(msg(30, 0)) // 210 > 200
	mustStatus(t, d, 0, Lost)
	checkAccounting(t, r)
	checkAccounting(t, d)
}

// TestJoinConcurrent: members that join at once are ordered. Every joiner's history holds the
// join frame of every member that joined before it, so of any two, the later one learns of the
// earlier one (the two steps used to race and each could miss the other).
func TestJoinConcurrent(t *testing.T) {
	const n = 64
	for round := range 20 {
		r := New(Config{History: 2 * n})
		msgs := make([]*Message, n)
		spans := make([]Span, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			msgs[i] = msg(10, uint64(i))
			wg.Go(func() {
				<-start
				spans[i] = r.Join(msgs[i], nil)
			})
		}
		close(start)
		wg.Wait()
		seen := map[int]bool{} // history lengths: 0..n-1, each once
		for i, sp := range spans {
			k := len(sp.Joins)
			if seen[k] {
				t.Fatalf("round %d: two joiners with %d joins in their history: one missed the other", round, k)
			}
			seen[k] = true
			for _, j := range sp.Joins {
				if j.Msg == msgs[i] {
					t.Fatalf("round %d: joiner %d has its own join frame in its history", round, i)
				}
			}
		}
	}
}

// Package ring is the lock-free broadcast ring of one Mles channel: many producers publish
// messages into it, any number of readers follow it with their own cursors, and the channel
// history (SPEC 1.4) is a bounded view of its newest messages.
//
// # Use
//
// One Ring per channel. A producer (the event loop that parsed a client's message) builds the
// server-to-client frame once and publishes it:
//
//	seq := r.Publish(&ring.Message{Frame: frame, From: connID})
//	// then wake the loops that own subscribers of this channel
//
// Each subscriber owns a cursor, the next sequence it has not delivered. Its loop drains it
// when woken, batching the frames into one write:
//
//	for head := r.Head(); cursor < head; cursor++ {
//		m, st := r.Read(cursor)
//		switch st {
//		case ring.NotReady:
//			// claimed but still being written: stop here; that producer's own
//			// wake brings this subscriber back.
//			return
//		case ring.Lost:
//			if cursor < span.End && r.Tail() <= span.End {
//				// history evicted or lapped during replay: skip what is
//				// gone, it was never live for us
//				cursor = r.Tail() - 1
//				continue
//			}
//			// lapped: the subscriber has missed live messages
//			// (SPEC 1.6: close it with 1008 "slow consumer").
//			return
//		}
//		if m.From == self {
//			continue // never echo
//		}
//		batch = append(batch, m.Frame...)
//	}
//
// A joining member takes its history span and starts its cursor at its Start; the same
// cursor then runs into live traffic, so replay and live messages can neither interleave nor
// reorder (SPEC 1.3). Join takes the span, lowers the member's mark to it and stores the
// member's own join frame right after it, in one step, so that of two members joining at once
// the later one's history holds the earlier one's join frame:
//
//	span := r.Join(&ring.Message{Frame: joinFrame, From: connID}, mark)
//	cursor := span.Start
//
// # Join frames
//
// A join frame is history, never traffic (SPEC 1.3), so it does not take a slot: the ring keeps
// the stored join frames in a log beside the slots, each with its position in the channel's
// order (the head when it was stored). A burst of joins therefore never laps a reader and never
// counts as its lag, however many members join. HistorySpan merges the two into the newest
// History items; the reader delivers span.Joins[i] before the message at Joins[i].Pos.
//
// # Marks
//
// A reader's Mark (or one Mark for a group of readers: the lowest cursor among them) keeps the
// byte caps from evicting what it has not read yet: caps cut history, never a live reader's
// backlog. Publish evicts below the lowest Mark only; Trim evicts the rest once the readers have
// moved their marks. Marks do not hold back laps (a reader a whole ring behind sees Lost), nor
// more than Config.Hold bytes beyond MaxBytes (a reader that far behind sees Lost as well).
//
// Frames are shared by all readers and never modified after Publish; a reader keeps a frame
// only until its write completes, and no frame goes back to a pool while a cursor can reach it
// (the garbage collector decides that).
//
// # Sequence protocol
//
// Sequences start at 0 and are claimed with one atomic add on the head. Sequence s lives in
// slot s&(Size-1); each slot holds an atomic message pointer and an atomic word that says which
// sequence the slot currently describes:
//
//	0             never written
//	s             the producer of s has claimed the slot and is writing it
//	s+1           message s is ready
//	(s+1)|busy    message s is being evicted (a byte cap or Release)
//	(s+1)|evicted message s was evicted; the pointer is nil
//
// A producer of s waits until the slot says "s-Size is ready or evicted" (the producer one lap
// earlier finished), takes it over with a compare-and-swap to s, stores the message pointer and
// finally stores s+1. It never waits for a reader; it can only wait, briefly, for the producer
// one lap earlier, or for an eviction of that older message, both of which run without waiting.
//
// A reader at cursor c reads the slot word, the pointer, and the word again (a seqlock): the
// word equal to c+1 both times means the pointer is message c. A smaller word means c is not
// written yet (NotReady); a larger one, or an eviction mark, means c is gone (Lost). Lost is
// never spurious and a reader never gets a wrong message: a producer replaces the word before
// the pointer, so a reader that loaded a newer pointer sees a newer word on its re-check.
//
// # Memory
//
// A Ring holds at most Size messages and History join frames, and its frame bytes are bounded
// by Config.MaxBytes and the shared Budget: after publishing s, the producer evicts the oldest
// messages and joins (never s itself, never at or above a Mark, never past a message still being
// written) while a cap is exceeded. Messages older than the history limit are not released
// early, because readers lagging up to Size still need them. What the marks hold back above the
// caps is bounded by the ring's size and by how long a reader may stay behind (the server's
// slow-consumer grace).
//
// Slots are allocated lazily: the chunk table on the first Publish, each chunk of slots by the
// first producer that reaches it (installed by compare-and-swap). An empty Ring costs one small
// struct, so 100k quiet channels do not each hold a slot array. A ring never shrinks; Release
// drops its messages and returns their bytes to the Budget.
//
// # Files
//
//   - message.go: Message, and NewMessage, which allocates a small one
//     together with its frame.
//   - ring.go: the Ring, Publish and Read (the sequence protocol below).
//   - history.go: the shared Budget, eviction by the byte caps (Trim),
//     Release, HistorySpan.
//   - joins.go: stored join frames beside the slots, Join.
//   - mark.go: Marks, which hold history back for members that have not
//     read it.
package ring

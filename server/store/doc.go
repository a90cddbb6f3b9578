// Package store keeps channel history on disk for --history-dir (SPEC 1.4 [beyond]), so that
// a restart loses nothing a sender's socket was told was taken.
//
// # Use
//
// The server opens the store before it listens, loads every channel's history into its rings,
// then appends each data message and each stored join frame as it takes them:
//
//	st, err := store.Open(store.Options{Dir: dir, Limit: limit, MaxBytes: capBytes, Sync: policy})
//	if err != nil {
//		return err // a *CorruptError or *LockedError says what to do
//	}
//	err = st.LoadAll(func(channel string, recs []store.Record) {
//		// recs are oldest first, cut to Limit and MaxBytes; they may be kept
//	})
//	...
//	st.Append(channel, store.Record{Order: seq, Origin: o, Seq: n, Op: store.OpText, Payload: p})
//	...
//	st.Drop(channel) // the 30-day idle sweep
//	...
//	st.Flush(ctx)    // SIGTERM: wait until everything appended is on disk
//	st.Close()
//
// # Writing
//
// Append runs on the event loops: it only sends the record by value on a bounded Go channel
// (Options.Queue) and never blocks, does I/O or allocates. One writer goroutine takes all that
// is queued when it wakes (up to 4096 records or 4 MiB), writes it as one batch to the engine's
// log, drops per channel what falls past the caps in the same batch, and asks for fsyncs per
// the SyncPolicy. A batch is in the OS when its commit returns: the writer commits with the
// engine's Sync, and the engine's file system (syncfs.go) turns the fsync that asks for into a
// note; the fsyncs run on that file system's goroutine, one covering every batch written before
// it starts (group commit), while the writer goes on writing. When the writer cannot keep up
// the queue fills and Append drops records: they are counted in Stats.Dropped, Stats.Behind is
// set until the queue empties again, and a log line says so at most every 10 s. The live
// traffic never waits for the disk, nor the writer for an fsync.
//
// What a crash loses: a killed process (kill -9) loses only what was still queued, normally a
// few milliseconds, since the writer wakes at once and each batch reaches the OS when it is
// written, whatever fsync runs (TestKill kills a process appending at chat rates, and during a
// 600 ms fsync: under 20 ms lost, against 80-390 ms and 870 ms before syncfs.go). A power loss
// loses up to the sync interval, with SyncAlways what was written during the fsync in flight.
//
// # Caps
//
// Each channel keeps its Limit newest data records and, counted apart, its Limit newest stored
// join frames; with MaxBytes, the oldest of either go first while the channel's payload bytes
// exceed it (the newest record always stays). The writer keeps each channel's counts, bytes and
// keys in memory (24 bytes per stored record), rebuilt at Open, so trimming never reads the
// disk. Open also applies lowered caps to what an earlier run stored.
//
// # Layout and damage
//
// Keys are the length-prefixed channel name, then Order and an arrival counter big-endian, so
// each channel is one range in (Order, Append) order; values start with a version byte (see
// record.go). One key outside every channel's range holds the next arrival counter. A record
// that does not decode is removed at Open, counted in Stats.Skipped and warned about; it is not
// fatal. A damaged directory (a file truncated or overwritten, or the engine failing on it)
// makes Open or LoadAll return a *CorruptError that names the directory, and the file when the
// engine knows it, and says to move it away: the server never panics nor loops on it. A torn
// end of the newest log, which a crash can leave, is not damage: the engine stops replaying
// there. But the engine cannot tell it from a log damaged further up, so the store keeps in
// mles.durable the arrival counter up to which records were fsynced (durable.go): when Open
// loads less, it warns (naming the directory and how many records are missing), counts them in
// Stats.Lost, and serves what it loaded. A second Store on the same directory waits
// Options.LockWait and returns a *LockedError.
//
// The store's log lines never show channel names or payloads above Debug. Pebble's error lines
// can quote keys, which start with the channel name: they are logged at Debug, with a fixed
// Error line (engine.go).
//
// # Concurrency
//
// Append, Drop, Flush and Stats are safe from any goroutine and never take a lock. The writer
// goroutine owns the engine batch and, under Store.mu, the per-channel index; LoadAll takes
// Store.mu to read whole batches only. The fsync goroutine of syncfs.go owns the fsyncs of the
// log and mles.durable; it answers Flush and Close.
//
// # Files
//
//   - store.go: Options, Store, Open, Append, Drop, Flush, Close, Stats.
//   - writer.go: the writer goroutine: batches, trimming, asking for fsyncs.
//   - syncfs.go: the engine's file system: the log's fsyncs on a goroutine of their own.
//   - durable.go: mles.durable, and the check at Open that tells a damaged log.
//   - load.go: rebuilding the index at Open; LoadAll.
//   - index.go: the per-channel index and the cap rules.
//   - record.go: Record, the key and value encodings.
//   - engine.go: Pebble behind open and scan; its errors and panics.
//   - sync.go: SyncPolicy and ParseSync (--history-sync).
//   - errors.go: CorruptError, LockedError, ErrClosed.
//   - lock_unix.go: the directory lock with a timeout.
package store

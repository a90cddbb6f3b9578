package server

// Slow consumers (SPEC 1.6): a member whose output is above MaxPending is
// paused on the loop's waiting list and resumed as it drains; one that
// stays above it past SlowGrace, or that the ring laps, is closed 1008
// "slow consumer" after what it had already been sent, never with a
// silent gap.

// whyLapped is slowConsumer's reason for a member the ring lapped.
const whyLapped = "lapped by the ring"

// outputFull reports whether the connection's unsent output is above
// MaxPending, and if so pauses it.
func (c *conn) outputFull() bool {
	if c.gc.OutboundBuffered() <= c.s.opts.MaxPending {
		return false
	}
	c.pause()
	return true
}

// pause notes that the member's output is over MaxPending and puts it
// on the loop's waiting list, which resumes it once the output drains.
func (c *conn) pause() {
	if c.pausedAt == 0 {
		c.pausedAt = c.l.now
	}
	c.l.wait(c)
}

// resume continues a connection from the loop's waiting list: a paused
// member drains on (or is closed past its grace), a closing one
// flushes on.
func (c *conn) resume() {
	if c.dead {
		return
	}
	switch c.state {
	case stJoined:
		if c.flags&fShutdown != 0 && c.l.now >= c.s.shutdownData.Load() {
			c.slowConsumer("behind at shutdown")
			return
		}
		if c.pausedAt != 0 && c.l.now-c.pausedAt >= int64(c.s.opts.SlowGrace) {
			c.slowConsumer("pending above max-pending past the grace period")
			return
		}
		if c.lapped() {
			// Known before the paused output even drains: what it has
			// not read is gone (a lap, or past the ring's Hold).
			c.slowConsumer(whyLapped)
			return
		}
		c.drain()
	case stHTTP:
		c.hc.pace()
	case stClosing:
		c.finishClose()
	}
}

// lappedAfter closes a reader the ring lapped (1008), after writing batch,
// what it had read before the gap.
func (c *conn) lappedAfter(batch []byte) {
	if len(batch) > 0 {
		c.writeOut(batch)
	}
	c.l.batch = batch[:0]
	c.slowConsumer(whyLapped)
}

// lapped reports whether messages the member has not read yet are gone
// from the ring. History lost during a replay does not count while nothing
// live is missing.
func (c *conn) lapped() bool {
	t := c.ch.ring.Tail()
	if t <= c.cursor {
		return false
	}
	rp := c.replay
	return rp == nil || c.cursor >= rp.end || t > rp.end
}

// historyLost reports whether a Lost read at the cursor is history that
// was evicted or overwritten while the member replayed it: the cursor is
// inside the replayed span and nothing from the span's end on (live
// traffic) is gone. Any other Lost is a lap. It does not ask the tail
// whether the cursor's message is gone: a producer claims a slot before
// it moves the tail, so for a moment a message is Lost while the tail is
// still at or below it, and a live member that skipped it then would skip
// messages without a close.
func (c *conn) historyLost() bool {
	rp := c.replay
	return rp != nil && c.cursor < rp.end && c.ch.ring.Tail() <= rp.end
}

// slowConsumer closes the member as a slow consumer; what it had not read
// counts as dropped.
func (c *conn) slowConsumer(why string) {
	c.s.slow.Add(1)
	drop := dropSlow
	if why == whyLapped {
		drop = dropLapped
	}
	if head := c.ch.ring.Head(); head > c.cursor {
		c.l.ctr.dropped[drop] += head - c.cursor
	}
	c.s.log.Info("slow consumer", "conn", c.id, "uid", c.uidID, "channel", c.ch.hid, "why", why)
	c.closeWith(closeSlow)
}

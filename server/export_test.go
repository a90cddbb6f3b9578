package server

import "time"

// SweepIdleChannels runs the idle-channel sweep at once with the given
// cutoff, as the ticker does every ChannelIdle/2 at most once a minute; for
// the end-to-end tests (package server_test), which cannot wait that long.
func (s *Server) SweepIdleChannels(cutoff time.Time) { s.reg.sweepIdle(cutoff.UnixNano()) }

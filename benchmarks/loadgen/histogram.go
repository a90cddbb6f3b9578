package main

import "math/bits"

// histogram is a log-linear latency histogram in the spirit of HdrHistogram:
// values (microseconds) below 128 are exact, above that every power of two is
// split into 128 buckets, so a reported percentile is within 0.8% of the true
// value. It is not safe for concurrent use: each receiver owns one and they
// are merged after the receivers stop.
type histogram struct {
	counts [histBuckets]uint32
	total  uint64
	max    uint64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxExp  = 32 // values up to 2^32 us (71 minutes); larger are clamped
	histBuckets = (histMaxExp - histSubBits + 1) * histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1
	return (e+1)*histSub + int(v>>uint(e)) - histSub
}

// histValue returns the middle of bucket i, the value a percentile reports.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	lo := uint64(i%histSub+histSub) << uint(e)
	return lo + (uint64(1)<<uint(e))/2
}

// record adds one value in microseconds.
func (h *histogram) record(us int64) {
	if us < 0 {
		us = 0
	}
	v := uint64(us)
	if v >= 1<<histMaxExp {
		v = 1<<histMaxExp - 1
	}
	h.counts[histIndex(v)]++
	h.total++
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0..1) in microseconds; the
// maximum is exact.
func (h *histogram) quantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(q*float64(h.total)) + 1
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			v := histValue(i)
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}

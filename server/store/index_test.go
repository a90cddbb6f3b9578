package store

import (
	"math/rand/v2"
	"testing"
)

// TestTrimModel checks the index against a plain model over random appends: what trim keeps
// is, at every step, what the rules say.
func TestTrimModel(t *testing.T) {
	const limit, maxBytes = 5, 60
	rng := rand.New(rand.NewPCG(3, 4))
	type rec struct {
		e    entry
		join bool
	}
	var c channelIndex
	var model []rec // in key order
	for i := range 2000 {
		x := rec{entry{order: uint64(i / 3), arrival: uint64(i), size: uint32(rng.IntN(25))}, rng.IntN(3) == 0}
		if rng.IntN(10) == 0 && x.e.order > 2 {
			x.e.order -= 2 // a late record goes to its place
		}
		c.add(x.e, x.join)
		dels := c.trim(limit, maxBytes, nil)
		// The model: insert, then drop per the rules.
		at := len(model)
		for at > 0 && x.e.before(model[at-1].e) {
			at--
		}
		model = append(model[:at], append([]rec{x}, model[at:]...)...)
		var want []entry
		for {
			var data, joins, bytes int
			for _, m := range model {
				bytes += int(m.e.size)
				if m.join {
					joins++
				} else {
					data++
				}
			}
			drop := -1
			switch {
			case bytes > maxBytes && len(model) > 1:
				drop = 0
			case data > limit:
				for j, m := range model {
					if !m.join {
						drop = j
						break
					}
				}
			case joins > limit:
				for j, m := range model {
					if m.join {
						drop = j
						break
					}
				}
			}
			if drop < 0 {
				break
			}
			want = append(want, model[drop].e)
			model = append(model[:drop], model[drop+1:]...)
		}
		if len(dels) != len(want) {
			t.Fatalf("step %d: trimmed %v, want %v", i, dels, want)
		}
		seen := map[entry]bool{}
		for _, d := range dels {
			seen[d] = true
		}
		for _, w := range want {
			if !seen[w] {
				t.Fatalf("step %d: trimmed %v, want %v", i, dels, want)
			}
		}
		if c.records() != len(model) {
			t.Fatalf("step %d: index holds %d, model %d", i, c.records(), len(model))
		}
	}
}

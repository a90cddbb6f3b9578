package store

import "sort"

// entry is what the writer remembers of one stored record: enough to name its key and to
// count it against the caps, without reading the engine. 24 bytes per record.
type entry struct {
	order, arrival uint64
	size           uint32 // payload bytes
}

// before reports whether e sorts before f (key order).
func (e entry) before(f entry) bool {
	return e.order < f.order || (e.order == f.order && e.arrival < f.arrival)
}

// deque is a channel's records of one kind (data or joins), oldest first. Records normally
// arrive in key order and go on the end; one that does not is inserted in its place.
type deque struct {
	e    []entry
	head int // e[head:] are live
}

func (d *deque) len() int      { return len(d.e) - d.head }
func (d *deque) front() *entry { return &d.e[d.head] }

func (d *deque) push(x entry) {
	live := d.e[d.head:]
	if len(live) == 0 || live[len(live)-1].before(x) {
		d.e = append(d.e, x)
		return
	}
	i := d.head + sort.Search(len(live), func(i int) bool { return x.before(live[i]) })
	d.e = append(d.e, entry{})
	copy(d.e[i+1:], d.e[i:])
	d.e[i] = x
}

// pop drops the oldest entry. The dropped prefix is reclaimed once it is half of the slice,
// so a channel at its limit keeps at most twice its limit of entries.
func (d *deque) pop() {
	d.head++
	if d.head == len(d.e) {
		d.e, d.head = d.e[:0], 0
	} else if d.head >= 32 && 2*d.head >= len(d.e) {
		n := copy(d.e, d.e[d.head:])
		d.e, d.head = d.e[:n], 0
	}
}

// channelIndex is the writer's view of one channel's stored history.
type channelIndex struct {
	data, joins deque
	bytes       int64 // payload bytes of data and joins
}

func (c *channelIndex) add(x entry, join bool) {
	if join {
		c.joins.push(x)
	} else {
		c.data.push(x)
	}
	c.bytes += int64(x.size)
}

func (c *channelIndex) records() int { return c.data.len() + c.joins.len() }

// trim drops the oldest records past the caps and appends each to dst: data records past
// limit, joins past limit (counted apart), and, while the payload bytes exceed maxBytes (0:
// no cap), the oldest record of either kind. The byte cap never drops the newest record: a
// message larger than the cap stays alone, as the ring keeps it (ring.Config.MaxBytes).
func (c *channelIndex) trim(limit int, maxBytes int64, dst []entry) []entry {
	for {
		overBytes := maxBytes > 0 && c.bytes > maxBytes && c.records() > 1
		var d *deque
		switch {
		case overBytes && c.data.len() > 0 && c.joins.len() > 0:
			d = &c.data
			if c.joins.front().before(*c.data.front()) {
				d = &c.joins
			}
		case overBytes && c.data.len() > 0, c.data.len() > limit:
			d = &c.data
		case overBytes, c.joins.len() > limit:
			d = &c.joins
		default:
			return dst
		}
		e := *d.front()
		d.pop()
		c.bytes -= int64(e.size)
		dst = append(dst, e)
	}
}

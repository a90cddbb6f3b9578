package ring

// Message is one published WebSocket message, immutable once published and shared by all
// readers. The ring tells publications apart by sequence, never by pointer, so publishing the
// same Message twice is safe (benchmarks do); modifying one that a cursor can reach is not.
type Message struct {
	// Frame is the complete server-to-client frame (header and payload). It is never modified
	// after Publish; readers may hand it to a write until that write completes.
	Frame []byte
	// From is the publisher's connection id; readers skip their own messages.
	From uint64
	// ID is the message's identity across servers (peering, SPEC 1.5) when it came from another
	// server or from the store; nil for a message a local client published on this channel
	// instance, whose identity is the channel's origin and its own sequence.
	ID *ID
}

// ID identifies a message across servers: Origin is random per channel instance of the server
// where a client published it, Seq increases with each message of that origin.
type ID struct{ Origin, Seq uint64 }

// InlineMax is the largest frame NewMessage allocates together with its
// Message, in one object; a larger frame takes a second allocation. Above
// 512 bytes Go's allocator gives an object with pointers an 8-byte header
// and costs more than a plain byte buffer beside a small Message (about 30%
// more at 1 KiB in BenchmarkNewMessage's runs), so one object is kept for
// chat-sized frames; at 64 to 480 bytes it costs about the same as two.
const InlineMax = 472

// NewMessage returns a Message from the publisher from holding a copy of
// frame. A frame of up to InlineMax bytes is stored in the same allocation
// as the Message (in the smallest of a set of size classes that holds it,
// each a size class of Go's allocator), so publishing one costs a single
// allocation; the server copies a small frame out of its reader's reused
// buffer rather than hand that buffer over and allocate a Message beside
// it. A larger frame is copied into its own buffer: there the caller
// should hand its buffer over instead (&Message{Frame: frame, From: from}).
func NewMessage(frame []byte, from uint64) *Message {
	n := len(frame)
	var m *Message
	if n <= InlineMax {
		// The smallest class that holds n: a binary search of classes.
		lo, hi := 0, len(classes)-1
		for lo < hi {
			mid := (lo + hi) / 2
			if classes[mid].size < n {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		m = classes[lo].alloc(n)
	} else {
		m = &Message{Frame: make([]byte, n)}
	}
	copy(m.Frame, frame)
	m.From = from
	return m
}

// classes are the inline frame sizes, ascending: each box (a 40-byte
// Message and the array) is exactly one of the allocator's size classes,
// from 48 to 512 bytes, so no box wastes more than the allocator's own
// rounding.
var classes = [...]struct {
	size  int
	alloc func(n int) *Message
}{
	{8, boxed[a8]},
	{24, boxed[a24]},
	{40, boxed[a40]},
	{56, boxed[a56]},
	{72, boxed[a72]},
	{88, boxed[a88]},
	{104, boxed[a104]},
	{120, boxed[a120]},
	{136, boxed[a136]},
	{152, boxed[a152]},
	{168, boxed[a168]},
	{184, boxed[a184]},
	{200, boxed[a200]},
	{216, boxed[a216]},
	{248, boxed[a248]},
	{280, boxed[a280]},
	{312, boxed[a312]},
	{344, boxed[a344]},
	{376, boxed[a376]},
	{408, boxed[a408]},
	{440, boxed[a440]},
	{472, boxed[a472]},
}

// box is a Message with its frame's storage in the same object. The frame
// points into the box, which the garbage collector keeps alive as long as
// either is referenced.
type box[A any] struct {
	Message
	a A
}

// storage is an array type that can slice itself (a type parameter of
// array type cannot be sliced directly unless all its types share one
// length).
type storage[A any] interface {
	*A
	bytes() []byte
}

func boxed[A any, P storage[A]](n int) *Message {
	b := new(box[A])
	b.Frame = P(&b.a).bytes()[:n:n]
	return &b.Message
}

type a8 [8]byte
type a24 [24]byte
type a40 [40]byte
type a56 [56]byte
type a72 [72]byte
type a88 [88]byte
type a104 [104]byte
type a120 [120]byte
type a136 [136]byte
type a152 [152]byte
type a168 [168]byte
type a184 [184]byte
type a200 [200]byte
type a216 [216]byte
type a248 [248]byte
type a280 [280]byte
type a312 [312]byte
type a344 [344]byte
type a376 [376]byte
type a408 [408]byte
type a440 [440]byte
type a472 [472]byte

func (a *a8) bytes() []byte   { return a[:] }
func (a *a24) bytes() []byte  { return a[:] }
func (a *a40) bytes() []byte  { return a[:] }
func (a *a56) bytes() []byte  { return a[:] }
func (a *a72) bytes() []byte  { return a[:] }
func (a *a88) bytes() []byte  { return a[:] }
func (a *a104) bytes() []byte { return a[:] }
func (a *a120) bytes() []byte { return a[:] }
func (a *a136) bytes() []byte { return a[:] }
func (a *a152) bytes() []byte { return a[:] }
func (a *a168) bytes() []byte { return a[:] }
func (a *a184) bytes() []byte { return a[:] }
func (a *a200) bytes() []byte { return a[:] }
func (a *a216) bytes() []byte { return a[:] }
func (a *a248) bytes() []byte { return a[:] }
func (a *a280) bytes() []byte { return a[:] }
func (a *a312) bytes() []byte { return a[:] }
func (a *a344) bytes() []byte { return a[:] }
func (a *a376) bytes() []byte { return a[:] }
func (a *a408) bytes() []byte { return a[:] }
func (a *a440) bytes() []byte { return a[:] }
func (a *a472) bytes() []byte { return a[:] }

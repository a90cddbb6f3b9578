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
}

// InlineMax is the largest frame NewMessage allocates together with its
// Message, in one object; a larger frame takes a second allocation. Above
// 512 bytes Go's allocator gives an object with pointers an 8-byte header
// and costs more than a plain byte buffer beside a small Message (about 30%
// more at 1 KiB in BenchmarkNewMessage's runs), so one object is kept for
// chat-sized frames; at 64 to 480 bytes it costs about the same as two.
const InlineMax = 480

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

// classes are the inline frame sizes, ascending: each box (a 32-byte
// Message and the array) is exactly one of the allocator's size classes,
// from 48 to 512 bytes, so no box wastes more than the allocator's own
// rounding.
var classes = [...]struct {
	size  int
	alloc func(n int) *Message
}{
	{16, boxed[a16]},
	{32, boxed[a32]},
	{48, boxed[a48]},
	{64, boxed[a64]},
	{80, boxed[a80]},
	{96, boxed[a96]},
	{112, boxed[a112]},
	{128, boxed[a128]},
	{144, boxed[a144]},
	{160, boxed[a160]},
	{176, boxed[a176]},
	{192, boxed[a192]},
	{208, boxed[a208]},
	{224, boxed[a224]},
	{256, boxed[a256]},
	{288, boxed[a288]},
	{320, boxed[a320]},
	{352, boxed[a352]},
	{384, boxed[a384]},
	{416, boxed[a416]},
	{448, boxed[a448]},
	{480, boxed[a480]},
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

type a16 [16]byte
type a32 [32]byte
type a48 [48]byte
type a64 [64]byte
type a80 [80]byte
type a96 [96]byte
type a112 [112]byte
type a128 [128]byte
type a144 [144]byte
type a160 [160]byte
type a176 [176]byte
type a192 [192]byte
type a208 [208]byte
type a224 [224]byte
type a256 [256]byte
type a288 [288]byte
type a320 [320]byte
type a352 [352]byte
type a384 [384]byte
type a416 [416]byte
type a448 [448]byte
type a480 [480]byte

func (a *a16) bytes() []byte  { return a[:] }
func (a *a32) bytes() []byte  { return a[:] }
func (a *a48) bytes() []byte  { return a[:] }
func (a *a64) bytes() []byte  { return a[:] }
func (a *a80) bytes() []byte  { return a[:] }
func (a *a96) bytes() []byte  { return a[:] }
func (a *a112) bytes() []byte { return a[:] }
func (a *a128) bytes() []byte { return a[:] }
func (a *a144) bytes() []byte { return a[:] }
func (a *a160) bytes() []byte { return a[:] }
func (a *a176) bytes() []byte { return a[:] }
func (a *a192) bytes() []byte { return a[:] }
func (a *a208) bytes() []byte { return a[:] }
func (a *a224) bytes() []byte { return a[:] }
func (a *a256) bytes() []byte { return a[:] }
func (a *a288) bytes() []byte { return a[:] }
func (a *a320) bytes() []byte { return a[:] }
func (a *a352) bytes() []byte { return a[:] }
func (a *a384) bytes() []byte { return a[:] }
func (a *a416) bytes() []byte { return a[:] }
func (a *a448) bytes() []byte { return a[:] }
func (a *a480) bytes() []byte { return a[:] }

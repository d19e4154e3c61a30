package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"

	"github.com/nitrovm/nitrovm/internal/memory"
)

// Split virtqueue layout (VirtIO 1.1 §2.6, "Split Virtqueues").
const (
	// QueueSizeMax is the largest queue size a split virtqueue may have
	// (VirtIO 1.1 §2.6: "Queue Size ... maximum 32768").
	QueueSizeMax = 32768

	descSize      = 16 // bytes per struct virtq_desc (§2.6.5).
	descAlign     = 16 // alignment of the descriptor table (§2.6, table 2.1).
	availAlign    = 2  // alignment of the available ring.
	usedAlign     = 4  // alignment of the used ring.
	ringHeader    = 4  // flags u16 + idx u16 before ring[] in avail and used rings.
	availElemSize = 2  // bytes per available ring entry (le16 descriptor index).
	usedElemSize  = 8  // bytes per struct virtq_used_elem (le32 id, le32 len).
	ringTrailer   = 2  // used_event / avail_event (present in memory layout).
)

// Descriptor and ring flags, from include/uapi/linux/virtio_ring.h.
const (
	// VIRTQ_DESC_F_NEXT marks a buffer as continuing via the next field.
	_VIRTQ_DESC_F_NEXT = 1
	// VIRTQ_DESC_F_WRITE marks a buffer as device write-only.
	_VIRTQ_DESC_F_WRITE = 2
	// VIRTQ_DESC_F_INDIRECT means the buffer contains a descriptor table.
	_VIRTQ_DESC_F_INDIRECT = 4
	// VRING_AVAIL_F_NO_INTERRUPT asks the device not to interrupt.
	_VRING_AVAIL_F_NO_INTERRUPT = 1
)

// Errors returned by Pop. Callers may branch on ErrMalformedChain (push the
// head back) versus ErrQueueBroken (the driver corrupted the ring itself).
var (
	// ErrMalformedChain reports a descriptor chain that breaks a VirtIO rule.
	ErrMalformedChain = errors.New("virtio: malformed descriptor chain")
	// ErrQueueBroken reports an available ring index that moved by more than
	// the queue size: the ring cannot be trusted any more.
	ErrQueueBroken = errors.New("virtio: available ring index out of range")
)

// Queue is a split virtqueue (VirtIO 1.1 §2.6) as configured by the driver.
// The device side consumes the available ring (Pop) and produces the used
// ring (Push). Pop and Push may be called from any goroutine; they are
// serialized by the queue.
type Queue struct {
	mem  *memory.Guest
	size uint16

	descGPA, availGPA, usedGPA uint64
	desc                       []byte // descriptor table, aliasing guest RAM.
	avail                      []byte // available ring, aliasing guest RAM.
	used                       []byte // used ring, aliasing guest RAM.

	mu            sync.Mutex
	nextAvail     uint16 // free-running index of the next avail entry to pop.
	nextUsed      uint16 // free-running index of the next used entry to fill.
	eventIdx      bool   // VIRTIO_RING_F_EVENT_IDX negotiated.
	signalledUsed uint16 // nextUsed when NeedInterrupt last ran.
	fence         atomic.Uint32
}

// NewQueue returns a queue of size entries whose descriptor table, available
// ring and used ring are at the given guest-physical addresses (validated:
// size power of 2 <= QueueSizeMax, areas inside guest RAM and aligned as
// VirtIO 1.1 §2.6 requires).
func NewQueue(mem *memory.Guest, size uint16, desc, avail, used uint64) (*Queue, error) {
	if size == 0 || size&(size-1) != 0 || size > QueueSizeMax {
		return nil, fmt.Errorf("virtio: queue size %d is not a power of 2 in [1, %d]", size, QueueSizeMax)
	}
	if desc%descAlign != 0 || avail%availAlign != 0 || used%usedAlign != 0 {
		return nil, fmt.Errorf("virtio: queue areas desc %#x avail %#x used %#x misaligned (want %d/%d/%d)",
			desc, avail, used, descAlign, availAlign, usedAlign)
	}
	n := uint64(size)
	d, err := mem.Slice(desc, descSize*n)
	if err != nil {
		return nil, fmt.Errorf("virtio: descriptor table: %w", err)
	}
	a, err := mem.Slice(avail, ringHeader+availElemSize*n+ringTrailer)
	if err != nil {
		return nil, fmt.Errorf("virtio: available ring: %w", err)
	}
	u, err := mem.Slice(used, ringHeader+usedElemSize*n+ringTrailer)
	if err != nil {
		return nil, fmt.Errorf("virtio: used ring: %w", err)
	}
	return &Queue{mem: mem, size: size, descGPA: desc, availGPA: avail, usedGPA: used, desc: d, avail: a, used: u}, nil
}

// SetEventIdx switches the queue to VIRTIO_RING_F_EVENT_IDX (VirtIO 1.1
// §2.6.7.2, §2.6.8.2): interrupts follow the driver's used_event, and the
// device publishes avail_event so the driver kicks only when needed. The
// transport calls it at activation, before the device uses the queue.
func (q *Queue) SetEventIdx(on bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.eventIdx = on
}

// Size returns the number of entries in the queue.
func (q *Queue) Size() uint16 { return q.size }

// availIdx reads the driver's available ring index (acquire).
func (q *Queue) availIdx() uint16 {
	if v, ok := load16(q.avail, 2); ok {
		return v
	}
	return binary.LittleEndian.Uint16(q.avail[2:])
}

// interruptSuppressed reports whether the driver set
// VRING_AVAIL_F_NO_INTERRUPT (VirtIO 1.1 §2.6.7). It is only a hint.
func (q *Queue) interruptSuppressed() bool {
	v, ok := load16(q.avail, 0)
	if !ok {
		v = binary.LittleEndian.Uint16(q.avail[0:])
	}
	return v&_VRING_AVAIL_F_NO_INTERRUPT != 0
}

// usedEvent reads the driver's used_event, the u16 after the available
// ring's entries (VirtIO 1.1 §2.6.6). Any value is acceptable: it is only
// compared, never used as an index.
func (q *Queue) usedEvent() uint16 {
	off := ringHeader + availElemSize*int(q.size)
	if v, ok := load16(q.avail, off); ok {
		return v
	}
	return binary.LittleEndian.Uint16(q.avail[off:])
}

// setAvailEvent publishes avail_event, the u16 after the used ring's
// entries (VirtIO 1.1 §2.6.8): the driver kicks once its available index
// passes it. A full fence follows, so that a re-read of the available
// index cannot be ordered before the store (the driver does the mirror
// image: store avail idx, fence, read avail_event).
func (q *Queue) setAvailEvent(v uint16) {
	store16(q.used, ringHeader+usedElemSize*int(q.size), v)
	q.fence.Add(1) // a locked read-modify-write: a full barrier.
}

// needEvent is vring_need_event from include/uapi/linux/virtio_ring.h:
// whether moving an index from old to new passed event.
func needEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// NeedInterrupt reports whether the driver wants an interrupt for the used
// buffers pushed since the last call (VirtIO 1.1 §2.6.7.2): with
// EVENT_IDX, when the used index passed the driver's used_event since then;
// otherwise unless the driver set VRING_AVAIL_F_NO_INTERRUPT. The device
// calls it (through the transport's Signaler) after pushing a batch.
func (q *Queue) NeedInterrupt() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	newIdx, old := q.nextUsed, q.signalledUsed
	q.signalledUsed = newIdx
	if !q.eventIdx {
		return !q.interruptSuppressed()
	}
	// The used index was published by an atomic store (a full fence on
	// the architectures Go supports for KVM), so used_event is read after
	// it, as §2.6.7.2 requires.
	return needEvent(q.usedEvent(), newIdx, old)
}

// Pop returns the next descriptor chain the driver made available, or
// (nil, nil) if none.
//
// Postconditions: a malformed chain (loop, index out of range, buffer
// outside guest RAM, too long, bad indirect table, readable after writable)
// returns ErrMalformedChain together with a non-nil Chain that has no
// buffers: the head was consumed and the caller should Push it back with
// nothing written so the driver is not wedged. ErrQueueBroken comes with a
// nil Chain and consumes nothing.
func (q *Queue) Pop() (*Chain, error) {
	c := new(Chain)
	if ok, err := q.PopInto(c); !ok {
		return nil, err
	}
	return c, c.err
}

// PopInto is Pop into a Chain the caller owns, reusing its memory, so that
// a device popping and pushing one chain at a time allocates nothing. c
// must not be in use (popped and not yet pushed). It reports false when
// the driver made nothing available (err is then nil or ErrQueueBroken);
// with true, err is nil or ErrMalformedChain as for Pop.
func (q *Queue) PopInto(c *Chain) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	idx := q.availIdx()
	pending := idx - q.nextAvail
	if pending == 0 && q.eventIdx {
		// About to go idle: ask for a kick at the next entry, then look
		// again in case the driver added one before seeing avail_event.
		q.setAvailEvent(q.nextAvail)
		idx = q.availIdx()
		pending = idx - q.nextAvail
	}
	if pending == 0 {
		return false, nil
	}
	if pending > q.size {
		return false, fmt.Errorf("%w: avail idx %d, last seen %d, size %d", ErrQueueBroken, idx, q.nextAvail, q.size)
	}
	slot := int(q.nextAvail % q.size)
	head := binary.LittleEndian.Uint16(q.avail[ringHeader+availElemSize*slot:])
	q.nextAvail++
	segs := c.segs[:0]
	*c = Chain{q: q, head: head, segs: segs}
	if err := c.walk(); err != nil {
		*c = Chain{q: q, head: head, segs: segs[:0]}
		c.err = fmt.Errorf("%w: head %d: %w", ErrMalformedChain, head, err)
		return true, c.err
	}
	return true, nil
}

// Push puts c on the used ring with c.Written() bytes. Each chain may be
// pushed once.
func (q *Queue) Push(c *Chain) error {
	if c == nil || c.q != q {
		return errors.New("virtio: push of a chain not popped from this queue")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.pushed {
		return fmt.Errorf("virtio: chain %d pushed twice", c.head)
	}
	c.pushed = true
	slot := int(q.nextUsed % q.size)
	e := q.used[ringHeader+usedElemSize*slot:]
	binary.LittleEndian.PutUint32(e[0:], uint32(c.head))
	binary.LittleEndian.PutUint32(e[4:], c.written)
	q.nextUsed++
	// The device owns the whole used ring header (flags are 0: we never
	// set VRING_USED_F_NO_NOTIFY), so one aligned 32-bit release store
	// publishes the element written above.
	if !store32(q.used, 0, uint32(q.nextUsed)<<16) {
		binary.LittleEndian.PutUint32(q.used[0:], uint32(q.nextUsed)<<16)
	}
	return nil
}

// segment is one validated buffer of a chain.
type segment struct {
	buf   []byte // aliases guest RAM; bounds checked at Pop.
	write bool   // device-writable.
}

// Chain is a descriptor chain popped from a Queue: a device-readable part
// followed by a device-writable part (VirtIO 1.1 §2.6.5). Read consumes the
// readable part, Write fills the writable part. A Chain is not safe for
// concurrent use.
type Chain struct {
	q        *Queue
	head     uint16
	segs     []segment
	readable uint32
	writable uint32

	rseg, roff int    // read cursor.
	wseg, woff int    // write cursor.
	written    uint32 // bytes written so far.
	pushed     bool
	err        error // why Pop emptied the chain, if it did.
}

// walk follows the chain starting at c.head, reading each descriptor from
// guest memory exactly once and validating it (VirtIO 1.1 §2.6.5,
// §2.6.5.3 for indirect tables). Total work is bounded by twice the queue
// size.
func (c *Chain) walk() error {
	q := c.q
	table := q.desc
	tableLen := uint32(q.size)
	idx := uint32(c.head)
	maxLen := int(q.size)
	indirect := false
	var readable, writable uint64
	sawWritable := false
	for {
		if idx >= tableLen {
			return fmt.Errorf("descriptor index %d out of range [0, %d)", idx, tableLen)
		}
		var d [descSize]byte
		copy(d[:], table[descSize*idx:])
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])

		if flags&_VIRTQ_DESC_F_INDIRECT != 0 {
			switch {
			case indirect:
				return errors.New("indirect descriptor inside an indirect table")
			case flags&_VIRTQ_DESC_F_NEXT != 0:
				return errors.New("indirect descriptor with NEXT set")
			case len(c.segs) != 0:
				return errors.New("indirect descriptor after direct buffers")
			case length == 0 || length%descSize != 0:
				return fmt.Errorf("indirect table length %d not a positive multiple of %d", length, descSize)
			case length/descSize > uint32(maxLen):
				return fmt.Errorf("indirect table of %d entries exceeds queue size %d", length/descSize, maxLen)
			}
			t, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return fmt.Errorf("indirect table: %w", err)
			}
			table, tableLen, idx, indirect = t, length/descSize, 0, true
			continue
		}
		if len(c.segs) >= maxLen {
			return fmt.Errorf("chain longer than queue size %d", maxLen)
		}
		buf, err := q.mem.Slice(addr, uint64(length))
		if err != nil {
			return fmt.Errorf("buffer %d: %w", len(c.segs), err)
		}
		w := flags&_VIRTQ_DESC_F_WRITE != 0
		if w {
			sawWritable = true
			writable += uint64(length)
		} else {
			if sawWritable {
				return errors.New("device-readable buffer after a device-writable one")
			}
			readable += uint64(length)
		}
		if readable > math.MaxUint32 || writable > math.MaxUint32 {
			return errors.New("chain length overflows 32 bits")
		}
		c.segs = append(c.segs, segment{buf: buf, write: w})
		if flags&_VIRTQ_DESC_F_NEXT == 0 {
			break
		}
		idx = uint32(next)
	}
	c.readable, c.writable = uint32(readable), uint32(writable)
	return nil
}

// Head returns the index of the chain's first descriptor (its used-ring id).
func (c *Chain) Head() uint16 { return c.head }

// ReadableLen returns the total bytes of device-readable descriptors.
func (c *Chain) ReadableLen() uint32 { return c.readable }

// WritableLen returns the total bytes of device-writable descriptors.
func (c *Chain) WritableLen() uint32 { return c.writable }

// Written returns the number of bytes written into the chain so far.
func (c *Chain) Written() uint32 { return c.written }

// Read implements io.Reader over the readable part of the chain. It copies
// out of guest memory and returns io.EOF once the readable part is consumed.
func (c *Chain) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for n < len(p) && c.rseg < len(c.segs) && !c.segs[c.rseg].write {
		s := c.segs[c.rseg].buf[c.roff:]
		k := copy(p[n:], s)
		n += k
		c.roff += k
		if c.roff == len(c.segs[c.rseg].buf) {
			c.rseg++
			c.roff = 0
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// PeekReadable appends to dst, as slices of guest memory, up to n of the
// next readable bytes without consuming them, so they can be handed to a
// system call without a copy; Discard then consumes what was used. The
// slices alias guest RAM, which the guest may change at any time.
func (c *Chain) PeekReadable(dst [][]byte, n int) [][]byte {
	seg, off := c.rseg, c.roff
	for n > 0 && seg < len(c.segs) && !c.segs[seg].write {
		s := c.segs[seg].buf[off:]
		if len(s) > n {
			s = s[:n]
		}
		if len(s) > 0 {
			dst = append(dst, s)
		}
		n -= len(s)
		seg, off = seg+1, 0
	}
	return dst
}

// Discard consumes up to n readable bytes as Read would, without copying
// them, and returns how many it consumed.
func (c *Chain) Discard(n int) int {
	done := 0
	for done < n && c.rseg < len(c.segs) && !c.segs[c.rseg].write {
		k := min(n-done, len(c.segs[c.rseg].buf)-c.roff)
		done += k
		c.roff += k
		if c.roff == len(c.segs[c.rseg].buf) {
			c.rseg++
			c.roff = 0
		}
	}
	return done
}

// Write implements io.Writer over the writable part of the chain. If p does
// not fit, Write fills the remaining room and returns io.ErrShortWrite.
func (c *Chain) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		for c.wseg < len(c.segs) && (!c.segs[c.wseg].write || c.woff == len(c.segs[c.wseg].buf)) {
			c.wseg++
			c.woff = 0
		}
		if c.wseg == len(c.segs) {
			return n, io.ErrShortWrite
		}
		k := copy(c.segs[c.wseg].buf[c.woff:], p[n:])
		n += k
		c.woff += k
		c.written += uint32(k)
	}
	return n, nil
}

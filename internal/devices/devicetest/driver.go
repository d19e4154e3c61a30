package devicetest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// virtio-mmio v2 registers and status bits as a driver sees them (VirtIO 1.1
// §4.2.2; include/uapi/linux/virtio_mmio.h, virtio_config.h).
const (
	regMagic          = 0x000
	regVersion        = 0x004
	regDeviceID       = 0x008
	regDeviceFeatures = 0x010
	regDeviceFeatSel  = 0x014
	regDriverFeatures = 0x020
	regDriverFeatSel  = 0x024
	regQueueSel       = 0x030
	regQueueNumMax    = 0x034
	regQueueNum       = 0x038
	regQueueReady     = 0x044
	regQueueNotify    = 0x050
	regIntStatus      = 0x060
	regIntACK         = 0x064
	regStatus         = 0x070
	regQueueDescLow   = 0x080
	regQueueDescHigh  = 0x084
	regQueueAvailLow  = 0x090
	regQueueAvailHigh = 0x094
	regQueueUsedLow   = 0x0a0
	regQueueUsedHigh  = 0x0a4
	regConfig         = 0x100

	mmioMagic = 0x74726976

	statusAck        = 1
	statusDriver     = 2
	statusDriverOK   = 4
	statusFeaturesOK = 8

	descFNext     = 1 // VIRTQ_DESC_F_NEXT.
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE.
	availFNoIntr  = 1 // VRING_AVAIL_F_NO_INTERRUPT.
	descBytes     = 16
	minBufferSize = 64 // smallest buffer allocation; sizes round up to powers of 2.
)

// ErrFeaturesRejected is returned by NewDriver when the device did not keep
// FEATURES_OK set after the driver wrote it.
var ErrFeaturesRejected = errors.New("devicetest: device rejected the driver's features")

// DriverOptions configures NewDriver. The zero value accepts every offered
// feature, uses each queue's QueueNumMax and allocates from all guest RAM
// above 64 KiB.
type DriverOptions struct {
	// RejectFeatures are offered feature bits the driver refuses, e.g.
	// virtio.FeatureVersion1 to act as a legacy driver.
	RejectFeatures uint64
	// QueueSizes overrides the size of queue i when QueueSizes[i] != 0.
	QueueSizes []uint16
	// MemBase and MemSize bound the guest RAM the driver allocates rings and
	// buffers from. MemSize 0 means up to the end of MemBase's region;
	// MemBase 0 means 0x10000.
	MemBase, MemSize uint64
}

// Desc is a struct virtq_desc (VirtIO 1.1 §2.6.5) for raw, possibly hostile,
// descriptor tables.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// QueueLayout is where a driver queue lives in guest memory.
type QueueLayout struct {
	Size              uint16
	Desc, Avail, Used uint64
}

// Used is one used-ring entry with the bytes the device wrote.
type Used struct {
	Head uint16
	Len  uint32
	// Data is the first Len bytes of the chain's writable buffers, for
	// chains made by Add (nil for raw chains).
	Data []byte
}

// buffer is one allocated guest buffer.
type buffer struct {
	gpa  uint64
	size uint64 // allocation size (class).
	len  uint32 // bytes used by the descriptor.
}

// chain is what the driver remembers about a chain it added.
type chain struct {
	descs    []uint16
	bufs     []buffer
	writable []buffer
}

// driverQueue is the driver's state for one virtqueue.
type driverQueue struct {
	layout     QueueLayout
	availFlags uint16
	availIdx   uint16
	usedSeen   uint16
	free       []uint16
	chains     map[uint16]*chain
}

// Driver is a guest-side virtio-mmio driver for tests. It negotiates like
// Linux's virtio_mmio driver (reset, ACKNOWLEDGE, DRIVER, features,
// FEATURES_OK, queue setup, DRIVER_OK), then adds chains, kicks and
// collects used buffers. It is safe for concurrent use.
type Driver struct {
	bus devices.BusDevice
	mem *memory.Guest

	mu       sync.Mutex
	features uint64
	queues   []*driverQueue
	next     uint64              // bump allocator cursor.
	end      uint64              // end of allocatable RAM.
	freeBufs map[uint64][]uint64 // size class -> free GPAs.
}

// NewDriver probes the transport at bus and brings the device up to
// DRIVER_OK, with its rings and buffers in mem.
func NewDriver(bus devices.BusDevice, mem *memory.Guest, opts DriverOptions) (*Driver, error) {
	d := &Driver{bus: bus, mem: mem, freeBufs: map[uint64][]uint64{}}
	d.next = opts.MemBase
	if d.next == 0 {
		d.next = 0x10000
	}
	d.end = d.next + opts.MemSize
	if opts.MemSize == 0 {
		for _, r := range mem.Regions() {
			if d.next >= r.GPA && d.next < r.End() {
				d.end = r.End()
			}
		}
	}
	if d.end <= d.next {
		return nil, fmt.Errorf("devicetest: no guest RAM at %#x to allocate from", d.next)
	}

	if v := d.read32(regMagic); v != mmioMagic {
		return nil, fmt.Errorf("devicetest: magic %#x, want %#x", v, mmioMagic)
	}
	if v := d.read32(regVersion); v != 2 {
		return nil, fmt.Errorf("devicetest: version %d, want 2", v)
	}
	if d.read32(regDeviceID) == 0 {
		return nil, errors.New("devicetest: no device (DeviceID 0)")
	}
	d.write32(regStatus, 0)
	d.write32(regStatus, statusAck)
	d.write32(regStatus, statusAck|statusDriver)

	d.write32(regDeviceFeatSel, 1)
	offered := uint64(d.read32(regDeviceFeatures)) << 32
	d.write32(regDeviceFeatSel, 0)
	offered |= uint64(d.read32(regDeviceFeatures))
	d.features = offered &^ opts.RejectFeatures
	d.write32(regDriverFeatSel, 1)
	d.write32(regDriverFeatures, uint32(d.features>>32))
	d.write32(regDriverFeatSel, 0)
	d.write32(regDriverFeatures, uint32(d.features))
	d.write32(regStatus, statusAck|statusDriver|statusFeaturesOK)
	if d.read32(regStatus)&statusFeaturesOK == 0 {
		return nil, ErrFeaturesRejected
	}

	for i := 0; ; i++ {
		d.write32(regQueueSel, uint32(i))
		max := d.read32(regQueueNumMax)
		if max == 0 {
			break
		}
		if d.read32(regQueueReady) != 0 {
			return nil, fmt.Errorf("devicetest: queue %d already ready after reset", i)
		}
		size := uint16(max)
		if i < len(opts.QueueSizes) && opts.QueueSizes[i] != 0 {
			size = opts.QueueSizes[i]
		}
		q, err := d.setupQueue(size)
		if err != nil {
			return nil, fmt.Errorf("devicetest: queue %d: %w", i, err)
		}
		d.write32(regQueueNum, uint32(size))
		d.write64(regQueueDescLow, regQueueDescHigh, q.layout.Desc)
		d.write64(regQueueAvailLow, regQueueAvailHigh, q.layout.Avail)
		d.write64(regQueueUsedLow, regQueueUsedHigh, q.layout.Used)
		d.write32(regQueueReady, 1)
		if d.read32(regQueueReady) != 1 {
			return nil, fmt.Errorf("devicetest: device refused queue %d (size %d)", i, size)
		}
		d.queues = append(d.queues, q)
	}
	d.write32(regStatus, statusAck|statusDriver|statusFeaturesOK|statusDriverOK)
	if s := d.read32(regStatus); s&statusDriverOK == 0 {
		return nil, fmt.Errorf("devicetest: device did not accept DRIVER_OK (status %#x)", s)
	}
	return d, nil
}

// setupQueue lays out a queue of size entries: descriptor table, then the
// available ring, then the used ring on its own 4 KiB page.
func (d *Driver) setupQueue(size uint16) (*driverQueue, error) {
	n := uint64(size)
	desc, err := d.alloc(descBytes*n, 4096)
	if err != nil {
		return nil, err
	}
	avail, err := d.alloc(6+2*n, 4)
	if err != nil {
		return nil, err
	}
	used, err := d.alloc(6+8*n, 4096)
	if err != nil {
		return nil, err
	}
	q := &driverQueue{layout: QueueLayout{Size: size, Desc: desc, Avail: avail, Used: used}, chains: map[uint16]*chain{}}
	for i := range size {
		q.free = append(q.free, i)
	}
	return q, nil
}

// alloc bump-allocates n bytes aligned to align. d.mu is held or d is not
// yet shared.
func (d *Driver) alloc(n, align uint64) (uint64, error) {
	gpa := (d.next + align - 1) &^ (align - 1)
	if gpa < d.next || gpa+n < gpa || gpa+n > d.end {
		return 0, fmt.Errorf("devicetest: out of guest memory allocating %d bytes", n)
	}
	d.next = gpa + n
	return gpa, nil
}

// allocBuffer returns a buffer of at least n bytes, reusing freed ones.
func (d *Driver) allocBuffer(n uint32) (buffer, error) {
	class := uint64(minBufferSize)
	for class < uint64(n) {
		class <<= 1
	}
	if l := d.freeBufs[class]; len(l) > 0 {
		gpa := l[len(l)-1]
		d.freeBufs[class] = l[:len(l)-1]
		return buffer{gpa: gpa, size: class, len: n}, nil
	}
	gpa, err := d.alloc(class, minBufferSize)
	if err != nil {
		return buffer{}, err
	}
	return buffer{gpa: gpa, size: class, len: n}, nil
}

// Alloc returns n bytes of guest memory (aligned to 64) for raw descriptors
// or indirect tables. It is never freed.
func (d *Driver) Alloc(n uint64) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.alloc(n, minBufferSize)
}

// Features returns the negotiated features.
func (d *Driver) Features() uint64 { return d.features }

// NumQueues returns the number of queues set up.
func (d *Driver) NumQueues() int { return len(d.queues) }

// Layout returns queue's guest-memory layout.
func (d *Driver) Layout(queue int) QueueLayout { return d.queues[queue].layout }

func (d *Driver) read32(off uint64) uint32 {
	var b [4]byte
	d.bus.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (d *Driver) write32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	d.bus.Write(off, b[:])
}

func (d *Driver) write64(lo, hi uint64, v uint64) {
	d.write32(lo, uint32(v))
	d.write32(hi, uint32(v>>32))
}

// Status reads the device status register.
func (d *Driver) Status() uint32 { return d.read32(regStatus) }

// Reset writes 0 to the status register.
func (d *Driver) Reset() { d.write32(regStatus, 0) }

// ReadConfig reads the device config space at off.
func (d *Driver) ReadConfig(off uint64, data []byte) { d.bus.Read(regConfig+off, data) }

// WriteConfig writes the device config space at off.
func (d *Driver) WriteConfig(off uint64, data []byte) { d.bus.Write(regConfig+off, data) }

// Ack reads InterruptStatus and acknowledges the bits it found, as Linux's
// interrupt handler does; it returns them.
func (d *Driver) Ack() uint32 {
	v := d.read32(regIntStatus)
	if v != 0 {
		d.write32(regIntACK, v)
	}
	return v
}

// Kick notifies the device that queue has new available buffers.
func (d *Driver) Kick(queue int) { d.write32(regQueueNotify, uint32(queue)) }

// SetNoInterrupt sets or clears VRING_AVAIL_F_NO_INTERRUPT on queue.
func (d *Driver) SetNoInterrupt(queue int, on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	if on {
		q.availFlags |= availFNoIntr
	} else {
		q.availFlags &^= availFNoIntr
	}
	return d.publishIdx(q)
}

// SetUsedEvent writes queue's used_event, the u16 after the available
// ring (VirtIO 1.1 §2.6.6; read by the device with EVENT_IDX).
func (d *Driver) SetUsedEvent(queue int, v uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	return d.mem.PutUint16(q.layout.Avail+4+2*uint64(q.layout.Size), v)
}

// AvailEvent reads queue's avail_event, the u16 after the used ring
// (VirtIO 1.1 §2.6.8; written by the device with EVENT_IDX).
func (d *Driver) AvailEvent(queue int) (uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	return d.mem.Uint16(q.layout.Used + 4 + 8*uint64(q.layout.Size))
}

// publishIdx stores the available ring's flags and idx with one aligned
// 32-bit release store. d.mu is held.
func (d *Driver) publishIdx(q *driverQueue) error {
	s, err := d.mem.Slice(q.layout.Avail, 4)
	if err != nil {
		return err
	}
	if !store32(s, uint32(q.availFlags)|uint32(q.availIdx)<<16) {
		return errors.New("devicetest: available ring not 4-byte aligned in host memory")
	}
	return nil
}

// WriteDesc writes a raw descriptor into queue's table at index (hostile
// tests). Do not mix raw descriptors with Add on one queue.
func (d *Driver) WriteDesc(queue int, index uint16, desc Desc) error {
	var b [descBytes]byte
	binary.LittleEndian.PutUint64(b[0:], desc.Addr)
	binary.LittleEndian.PutUint32(b[8:], desc.Len)
	binary.LittleEndian.PutUint16(b[12:], desc.Flags)
	binary.LittleEndian.PutUint16(b[14:], desc.Next)
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	return d.mem.Write(q.layout.Desc+descBytes*uint64(index%q.layout.Size), b[:])
}

// Publish puts head on queue's available ring and advances its index,
// without kicking.
func (d *Driver) Publish(queue int, head uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.publish(d.queues[queue], head)
}

// publish implements Publish. d.mu is held.
func (d *Driver) publish(q *driverQueue, head uint16) error {
	slot := uint64(q.availIdx % q.layout.Size)
	if err := d.mem.PutUint16(q.layout.Avail+4+2*slot, head); err != nil {
		return err
	}
	q.availIdx++
	return d.publishIdx(q)
}

// SetAvailIdx overwrites queue's available index (hostile tests).
func (d *Driver) SetAvailIdx(queue int, idx uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	q.availIdx = idx
	return d.publishIdx(q)
}

// Add makes a chain of one device-readable descriptor per entry of readable
// (holding its bytes) followed by one device-writable descriptor per entry
// of writable (of that size), publishes it on queue's available ring and
// returns its head. It does not kick.
func (d *Driver) Add(queue int, readable [][]byte, writable []uint32) (uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	n := len(readable) + len(writable)
	if n == 0 {
		return 0, errors.New("devicetest: empty chain")
	}
	if n > len(q.free) {
		return 0, fmt.Errorf("devicetest: queue %d has %d free descriptors, need %d", queue, len(q.free), n)
	}
	c := &chain{descs: append([]uint16(nil), q.free[:n]...)}
	for i := 0; i < n; i++ {
		var b buffer
		var err error
		flags := uint16(0)
		if i < len(readable) {
			b, err = d.allocBuffer(uint32(len(readable[i])))
			if err == nil {
				err = d.mem.Write(b.gpa, readable[i])
			}
		} else {
			b, err = d.allocBuffer(writable[i-len(readable)])
			flags = descFWrite
			if err == nil {
				s, _ := d.mem.Slice(b.gpa, b.size)
				clear(s)
			}
			c.writable = append(c.writable, b)
		}
		if err != nil {
			d.freeChain(c)
			return 0, err
		}
		c.bufs = append(c.bufs, b)
		next := uint16(0)
		if i+1 < n {
			flags |= descFNext
			next = c.descs[i+1]
		}
		var raw [descBytes]byte
		binary.LittleEndian.PutUint64(raw[0:], b.gpa)
		binary.LittleEndian.PutUint32(raw[8:], b.len)
		binary.LittleEndian.PutUint16(raw[12:], flags)
		binary.LittleEndian.PutUint16(raw[14:], next)
		if err := d.mem.Write(q.layout.Desc+descBytes*uint64(c.descs[i]), raw[:]); err != nil {
			d.freeChain(c)
			return 0, err
		}
	}
	q.free = q.free[n:]
	head := c.descs[0]
	q.chains[head] = c
	if err := d.publish(q, head); err != nil {
		return 0, err
	}
	return head, nil
}

// freeChain returns c's buffers to the allocator. d.mu is held.
func (d *Driver) freeChain(c *chain) {
	for _, b := range c.bufs {
		d.freeBufs[b.size] = append(d.freeBufs[b.size], b.gpa)
	}
}

// Used returns the entries the device put on queue's used ring since the
// last call, freeing the descriptors and buffers of chains made by Add.
func (d *Driver) Used(queue int) ([]Used, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queues[queue]
	hdr, err := d.mem.Slice(q.layout.Used, 4)
	if err != nil {
		return nil, err
	}
	w, ok := load32(hdr)
	if !ok {
		return nil, errors.New("devicetest: used ring not 4-byte aligned in host memory")
	}
	idx := uint16(w >> 16)
	if uint16(idx-q.usedSeen) > q.layout.Size {
		return nil, fmt.Errorf("devicetest: used idx %d jumped past %d by more than the queue size", idx, q.usedSeen)
	}
	var out []Used
	for ; q.usedSeen != idx; q.usedSeen++ {
		slot := uint64(q.usedSeen % q.layout.Size)
		e := q.layout.Used + 4 + 8*slot
		id, err := d.mem.Uint32(e)
		if err != nil {
			return nil, err
		}
		n, err := d.mem.Uint32(e + 4)
		if err != nil {
			return nil, err
		}
		u := Used{Head: uint16(id), Len: n}
		if id > 0xffff {
			out = append(out, u)
			continue
		}
		if c, ok := q.chains[uint16(id)]; ok {
			delete(q.chains, uint16(id))
			left := n
			u.Data = []byte{}
			for _, b := range c.writable {
				k := min(left, b.len)
				s, err := d.mem.Slice(b.gpa, uint64(k))
				if err != nil {
					return nil, err
				}
				u.Data = append(u.Data, s...)
				left -= k
			}
			q.free = append(q.free, c.descs...)
			d.freeChain(c)
		}
		out = append(out, u)
	}
	return out, nil
}

// WaitUsed collects used entries of queue until it has at least n or
// timeout passes (then it returns what it has and ErrTimeout).
func (d *Driver) WaitUsed(queue, n int, timeout time.Duration) ([]Used, error) {
	deadline := time.Now().Add(timeout)
	var all []Used
	for {
		u, err := d.Used(queue)
		all = append(all, u...)
		if err != nil {
			return all, err
		}
		if len(all) >= n {
			return all, nil
		}
		if time.Now().After(deadline) {
			return all, ErrTimeout
		}
		time.Sleep(200 * time.Microsecond)
	}
}

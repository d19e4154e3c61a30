// Package vsocktest is a simulated guest for testing the vsock device and
// its host backends without a VM: a guest-side split-virtqueue driver over
// byte-slice guest memory plus a small vsock socket layer that behaves
// like Linux's virtio_transport_common.c (credit-based flow control,
// shutdown, reset), with Dial and Listen.
//
// It also checks the device: a packet that exceeds the credit the guest
// granted is recorded as a violation (see Guest.Violations).
package vsocktest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// Guest memory layout of the simulated driver.
const (
	queueSize       = 256           // entries per virtqueue.
	rxBufBytes      = 4096          // Linux's VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE.
	rxBufBase       = 0x0001_0000   // rx buffer i at rxBufBase + i*rxBufBytes.
	txSlots         = queueSize / 2 // each tx packet uses two descriptors.
	txSlotBytes     = 68 << 10      // header (padded to 4 KiB) + 64 KiB payload.
	txHdrPadding    = 4 << 10       // offset of the payload in a tx slot.
	txBufBase       = 0x0020_0000   // tx slot s at txBufBase + s*txSlotBytes.
	memBytes        = 16 << 20      // 16 MiB of guest RAM.
	descBytes       = 16            // struct virtq_desc.
	vringDescFNext  = 1             // VRING_DESC_F_NEXT
	vringDescFWrite = 2             // VRING_DESC_F_WRITE
)

// ring is the guest-physical placement of one virtqueue.
type ring struct{ desc, avail, used uint64 }

// rings returns where queue i lives.
func rings(i int) ring {
	base := uint64(i) * 0x3000
	return ring{desc: base, avail: base + 0x1000, used: base + 0x2000}
}

// ConnBufBytes is the receive buffer each guest socket grants the device.
const ConnBufBytes = 256 << 10

// Guest is a simulated guest driving a *vsock.Device through real
// virtqueues. Create it with Start.
type Guest struct {
	dev    *vsock.Device
	cid    uint64
	raw    []byte
	logger *slog.Logger
	sig    [3]chan struct{} // per queue, from SignalUsed.
	stop   chan struct{}
	done   chan struct{}

	txMu       sync.Mutex
	txFree     []int
	txAvailIdx uint16
	txUsedIdx  uint16

	rxAvailIdx uint16 // rx goroutine only.
	rxUsedIdx  uint16

	mu         sync.Mutex
	conns      map[connKey]*Conn
	listeners  map[uint32]*Listener
	nextPort   uint32
	violations []string
	closed     bool
}

type connKey struct {
	peerCID   uint64
	peerPort  uint32
	localPort uint32
}

// Start activates dev with queues in fresh simulated guest memory and
// starts the guest's receive loop. Stop it with Close.
func Start(dev *vsock.Device, logger *slog.Logger) (*Guest, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	raw := make([]byte, memBytes)
	mem, err := memory.New(memory.Region{GPA: 0, Data: raw})
	if err != nil {
		return nil, fmt.Errorf("vsocktest: memory: %w", err)
	}
	g := &Guest{
		dev: dev, cid: dev.GuestCID(), raw: raw, logger: logger,
		stop: make(chan struct{}), done: make(chan struct{}),
		conns: map[connKey]*Conn{}, listeners: map[uint32]*Listener{}, nextPort: 50000,
	}
	var qs []*virtio.Queue
	for i := range 3 {
		g.sig[i] = make(chan struct{}, 1)
		r := rings(i)
		q, err := virtio.NewQueue(mem, queueSize, r.desc, r.avail, r.used)
		if err != nil {
			return nil, fmt.Errorf("vsocktest: queue %d: %w", i, err)
		}
		qs = append(qs, q)
	}
	// rx: every descriptor is a device-writable 4 KiB buffer, all posted.
	for i := range queueSize {
		g.putDesc(rings(0).desc, i, rxBufBase+uint64(i)*rxBufBytes, rxBufBytes, vringDescFWrite, 0)
		g.putAvail(rings(0), &g.rxAvailIdx, uint16(i))
	}
	for s := range txSlots {
		g.txFree = append(g.txFree, s)
	}
	if err := dev.Activate(mem, qs, g); err != nil {
		return nil, fmt.Errorf("vsocktest: activate: %w", err)
	}
	go g.rxLoop()
	return g, nil
}

// SignalUsed implements virtio.Signaler.SignalUsed.
func (g *Guest) SignalUsed(queue int) error {
	select {
	case g.sig[queue] <- struct{}{}:
	default:
	}
	return nil
}

// SignalConfig implements virtio.Signaler.SignalConfig.
func (g *Guest) SignalConfig() error { return nil }

// Violations returns the device misbehaviours seen so far.
func (g *Guest) Violations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.violations...)
}

func (g *Guest) violate(format string, args ...any) {
	g.violations = append(g.violations, fmt.Sprintf(format, args...))
}

// Close stops the receive loop and resets the device.
func (g *Guest) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	for _, c := range g.conns {
		c.fail(errors.New("vsocktest: guest closed"))
	}
	for _, l := range g.listeners {
		l.closeLocked()
	}
	g.mu.Unlock()
	close(g.stop)
	<-g.done
	g.dev.Reset()
	return nil
}

func (g *Guest) putDesc(table uint64, i int, addr uint64, n uint32, flags, next uint16) {
	b := g.raw[table+uint64(i)*descBytes:]
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// putAvail adds head to the available ring and publishes the new index
// (release, so the device sees the descriptors written before).
func (g *Guest) putAvail(r ring, idx *uint16, head uint16) {
	a := g.raw[r.avail:]
	binary.LittleEndian.PutUint16(a[4+2*int(*idx%queueSize):], head)
	*idx++
	store32(a, 0, uint32(*idx)<<16)
}

// usedIdx loads the device's used index (acquire).
func (g *Guest) usedIdx(r ring) uint16 { return uint16(load32(g.raw[r.used:], 0) >> 16) }

// usedElem returns used ring element i: descriptor id and bytes written.
func (g *Guest) usedElem(r ring, i uint16) (uint32, uint32) {
	e := g.raw[r.used+4+8*uint64(i%queueSize):]
	return binary.LittleEndian.Uint32(e[0:]), binary.LittleEndian.Uint32(e[4:])
}

// rxLoop receives packets from the device.
func (g *Guest) rxLoop() {
	defer close(g.done)
	r := rings(0)
	const poll = 50 * time.Millisecond // in case of a lost signal.
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-g.sig[0]:
		case <-t.C:
		}
		t.Reset(poll) // one timer for the loop: -benchmem shows the device's allocations.
		reposted := false
		for g.rxUsedIdx != g.usedIdx(r) {
			id, n := g.usedElem(r, g.rxUsedIdx)
			g.rxUsedIdx++
			if id >= queueSize || n > rxBufBytes {
				g.mu.Lock()
				g.violate("rx used element id %d len %d", id, n)
				g.mu.Unlock()
				continue
			}
			buf := g.raw[rxBufBase+uint64(id)*rxBufBytes:][:n]
			g.receive(buf)
			g.putAvail(r, &g.rxAvailIdx, uint16(id))
			reposted = true
		}
		if reposted {
			g.dev.Notify(0)
		}
	}
}

// send queues one packet on tx, waiting for a free slot. If c is not nil
// the packet belongs to c and its fwd_cnt is stamped here.
//
// Every packet tells the device our fwd_cnt, and the device simply takes
// the latest value it sees, so the values must reach the tx ring in
// increasing order. Filling FwdCnt when the header is built (under g.mu)
// and queuing it later (under txMu) lets concurrent senders on one socket
// reorder them: Write builds an RW header with fwd_cnt Y, then waits for
// txMu or a tx slot (100 sockets share 128 slots) while Read consumes
// more and sends credit updates up to Z; the stale RW then lands after
// them and moves the device's peer fwd_cnt back by Z-Y (seen > 256 KiB).
// The guest thinks it already granted that credit (lastFwd = Z) and sends
// no update until it consumes another quarter buffer, which the device,
// seeing zero credit, never sends: both sides wait forever. Linux avoids
// this by filling fwd_cnt in virtio_transport_inc_tx_pkt right before
// queuing, with the socket lock held; we stamp it under txMu, which
// orders the ring.
func (g *Guest) send(c *Conn, h vsock.Header, payload []byte) error {
	h.SrcCID = g.cid
	h.Type = vsock.VIRTIO_VSOCK_TYPE_STREAM
	h.Len = uint32(len(payload))
	r := rings(1)
	g.txMu.Lock()
	defer g.txMu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for g.txUsedIdx != g.usedIdx(r) {
			id, _ := g.usedElem(r, g.txUsedIdx)
			g.txUsedIdx++
			g.txFree = append(g.txFree, int(id/2))
		}
		if len(g.txFree) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("vsocktest: tx queue stuck")
		}
		select {
		case <-g.sig[1]:
		case <-time.After(time.Millisecond):
		}
	}
	if c != nil {
		// Lock order: txMu, then g.mu (nobody takes txMu holding g.mu).
		g.mu.Lock()
		h.FwdCnt = c.fwdCnt
		c.lastFwd = c.fwdCnt
		g.mu.Unlock()
	}
	s := g.txFree[len(g.txFree)-1]
	g.txFree = g.txFree[:len(g.txFree)-1]
	base := txBufBase + uint64(s)*txSlotBytes
	h.Encode(g.raw[base:])
	if len(payload) > 0 {
		copy(g.raw[base+txHdrPadding:], payload)
		g.putDesc(r.desc, 2*s, base, vsock.HeaderSize, vringDescFNext, uint16(2*s+1))
		g.putDesc(r.desc, 2*s+1, base+txHdrPadding, uint32(len(payload)), 0, 0)
	} else {
		g.putDesc(r.desc, 2*s, base, vsock.HeaderSize, 0, 0)
	}
	g.putAvail(r, &g.txAvailIdx, uint16(2*s))
	g.dev.Notify(1)
	return nil
}

// reply sends a control packet answering h.
func (g *Guest) reply(h vsock.Header, op uint16) {
	_ = g.send(nil, vsock.Header{DstCID: h.SrcCID, SrcPort: h.DstPort, DstPort: h.SrcPort, Op: op}, nil)
}

// SendRaw queues a tx chain of one device-readable descriptor per part,
// exactly as given (at most 2 parts, each at most 64 KiB): a hostile
// guest's packet.
func (g *Guest) SendRaw(parts ...[]byte) error {
	if len(parts) == 0 || len(parts) > 2 {
		return fmt.Errorf("vsocktest: SendRaw with %d parts, want 1 or 2", len(parts))
	}
	r := rings(1)
	g.txMu.Lock()
	defer g.txMu.Unlock()
	for g.txUsedIdx != g.usedIdx(r) {
		id, _ := g.usedElem(r, g.txUsedIdx)
		g.txUsedIdx++
		g.txFree = append(g.txFree, int(id/2))
	}
	if len(g.txFree) == 0 {
		return errors.New("vsocktest: tx queue full")
	}
	s := g.txFree[len(g.txFree)-1]
	g.txFree = g.txFree[:len(g.txFree)-1]
	base := txBufBase + uint64(s)*txSlotBytes
	offs := []uint64{0, txHdrPadding}
	for i, p := range parts {
		if len(p) > txSlotBytes-txHdrPadding || (i == 0 && len(p) > txHdrPadding && len(parts) == 2) {
			return fmt.Errorf("vsocktest: SendRaw part %d too long", i)
		}
		copy(g.raw[base+offs[i]:], p)
		flags, next := uint16(0), uint16(0)
		if i+1 < len(parts) {
			flags, next = vringDescFNext, uint16(2*s+i+1)
		}
		g.putDesc(r.desc, 2*s+i, base+offs[i], uint32(len(p)), flags, next)
	}
	g.putAvail(r, &g.txAvailIdx, uint16(2*s))
	g.dev.Notify(1)
	return nil
}

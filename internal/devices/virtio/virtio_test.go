package virtio_test

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/devicetest"
	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// echoDevice copies each chain's readable bytes into its writable part, on
// a goroutine of its own, as a real device model would.
type echoDevice struct {
	nq       int
	features uint64

	mu        sync.Mutex
	activated int
	resets    int
	queues    []*virtio.Queue
	sig       virtio.Signaler
	errs      []error
	drained   int       // passes that found the kicked queue empty.
	drainCond sync.Cond // signalled when drained grows; L is &mu.
	kick      chan int
	done      chan struct{}
	wg        sync.WaitGroup
	config    [8]byte
}

func newEcho(nq int) *echoDevice {
	e := &echoDevice{nq: nq}
	e.drainCond.L = &e.mu
	return e
}

// drains returns how many passes have drained a kicked queue so far.
func (e *echoDevice) drains() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.drained
}

// waitDrained waits until more than n passes have drained a kicked queue,
// so that what the device wrote in the pass (avail_event) is visible.
func (e *echoDevice) waitDrained(t *testing.T, n int) {
	t.Helper()
	stop := time.AfterFunc(5*time.Second, func() {
		e.mu.Lock()
		e.drainCond.Broadcast()
		e.mu.Unlock()
	})
	defer stop.Stop()
	deadline := time.Now().Add(5 * time.Second)
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.drained <= n {
		if time.Now().After(deadline) {
			t.Fatalf("device drained %d times in 5 s, want more than %d", e.drained, n)
		}
		e.drainCond.Wait()
	}
}

func (e *echoDevice) DeviceID() uint32 { return 0x7e }
func (e *echoDevice) Features() uint64 { return e.features }
func (e *echoDevice) QueueMaxSizes() []uint16 {
	s := make([]uint16, e.nq)
	for i := range s {
		s[i] = 16
	}
	return s
}
func (e *echoDevice) ReadConfig(off uint64, data []byte) {
	for i := range data {
		if off+uint64(i) < uint64(len(e.config)) {
			data[i] = e.config[off+uint64(i)]
		}
	}
}
func (e *echoDevice) WriteConfig(off uint64, data []byte) {
	for i := range data {
		if off+uint64(i) < uint64(len(e.config)) {
			e.config[off+uint64(i)] = data[i]
		}
	}
}

func (e *echoDevice) Activate(mem *memory.Guest, queues []*virtio.Queue, sig virtio.Signaler) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.activated++
	e.queues, e.sig = queues, sig
	e.kick, e.done = make(chan int, 1), make(chan struct{})
	e.wg.Add(1)
	go e.run(e.kick, e.done, queues, sig)
	return nil
}

func (e *echoDevice) run(kick chan int, done chan struct{}, queues []*virtio.Queue, sig virtio.Signaler) {
	defer e.wg.Done()
	for {
		select {
		case <-done:
			return
		case qi := <-kick:
			q := queues[qi]
			for {
				c, err := q.Pop()
				if err != nil {
					e.mu.Lock()
					e.errs = append(e.errs, err)
					e.mu.Unlock()
					if c == nil {
						break
					}
				} else if c == nil {
					break
				} else {
					b, _ := io.ReadAll(c)
					_, _ = c.Write(b)
				}
				if err := q.Push(c); err != nil {
					panic(err)
				}
				_ = sig.SignalUsed(qi)
			}
			e.mu.Lock()
			e.drained++
			e.drainCond.Broadcast()
			e.mu.Unlock()
		}
	}
}

func (e *echoDevice) Notify(q int) {
	select {
	case e.kick <- q:
	default:
	}
}

func (e *echoDevice) Reset() {
	e.mu.Lock()
	done := e.done
	e.done = nil
	e.resets++
	e.mu.Unlock()
	if done != nil {
		close(done)
	}
	e.wg.Wait()
}

func (e *echoDevice) errors() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

func setup(t *testing.T, dev virtio.Device, opts devicetest.DriverOptions) (*virtio.MMIO, *devicetest.Driver, *devicetest.IRQRecorder, *memory.Guest) {
	t.Helper()
	mem := devicetest.NewMemory(4 << 20)
	irq := &devicetest.IRQRecorder{}
	m := virtio.NewMMIO(dev, mem, irq, nil)
	d, err := devicetest.NewDriver(m, mem, opts)
	if err != nil {
		t.Fatalf("NewDriver: %v", err)
	}
	t.Cleanup(m.Reset)
	return m, d, irq, mem
}

func read32(m *virtio.MMIO, off uint64) uint32 {
	var b [4]byte
	m.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func write32(m *virtio.MMIO, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	m.Write(off, b[:])
}

func TestRegisters(t *testing.T) {
	dev := newEcho(2)
	dev.features = 1 << 3
	m := virtio.NewMMIO(dev, devicetest.NewMemory(1<<20), &devicetest.IRQRecorder{}, nil)
	tests := []struct {
		name string
		sel  func()
		off  uint64
		want uint32
	}{
		{"magic", nil, 0x000, virtio.MMIOMagic},
		{"version", nil, 0x004, 2},
		{"device id", nil, 0x008, 0x7e},
		{"vendor id", nil, 0x00c, virtio.MMIOVendorID},
		{"features low", func() { write32(m, 0x14, 0) }, 0x010, 1<<3 | 1<<28 | 1<<29},
		{"features high", func() { write32(m, 0x14, 1) }, 0x010, 1},
		{"features sel 2", func() { write32(m, 0x14, 2) }, 0x010, 0},
		{"queue num max", func() { write32(m, 0x30, 1) }, 0x034, 16},
		{"queue num max absent", func() { write32(m, 0x30, 2) }, 0x034, 0},
		{"queue ready", func() { write32(m, 0x30, 0) }, 0x044, 0},
		{"interrupt status", nil, 0x060, 0},
		{"status", nil, 0x070, 0},
		{"config generation", nil, 0x0fc, 0},
		{"write-only reads zero", nil, 0x050, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sel != nil {
				tc.sel()
			}
			if got := read32(m, tc.off); got != tc.want {
				t.Fatalf("got %#x, want %#x", got, tc.want)
			}
		})
	}
	// Narrow register accesses read zero and are ignored on write.
	b := []byte{0xff, 0xff}
	m.Read(0, b)
	if b[0] != 0 || b[1] != 0 {
		t.Fatalf("got 16-bit magic read %x, want 0000", b)
	}
	m.Write(0x70, []byte{1})
	if got := read32(m, 0x70); got != 0 {
		t.Fatalf("got status %#x after 8-bit write, want 0", got)
	}
}

func TestConfigSpace(t *testing.T) {
	dev := newEcho(1)
	m := virtio.NewMMIO(dev, devicetest.NewMemory(1<<20), &devicetest.IRQRecorder{}, nil)
	m.Write(0x102, []byte{0xaa, 0xbb})
	b := make([]byte, 8)
	m.Read(0x100, b)
	if b[2] != 0xaa || b[3] != 0xbb {
		t.Fatalf("got config %x, want aabb at 2", b)
	}
}

func TestNegotiationAndEcho(t *testing.T) {
	dev := newEcho(2)
	m, d, irq, _ := setup(t, dev, devicetest.DriverOptions{})
	if got := m.Status(); got != virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK {
		t.Fatalf("got status %#x, want 0xf", got)
	}
	if dev.activated != 1 || len(dev.queues) != 2 {
		t.Fatalf("got %d activations with %d queues, want 1 with 2", dev.activated, len(dev.queues))
	}
	if got := d.Features(); got&virtio.FeatureVersion1 == 0 {
		t.Fatalf("got features %#x, want VERSION_1", got)
	}
	head, err := d.Add(1, [][]byte{[]byte("hello, "), []byte("world")}, []uint32{4, 100})
	if err != nil {
		t.Fatal(err)
	}
	d.Kick(1)
	used, err := d.WaitUsed(1, 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if used[0].Head != head || string(used[0].Data) != "hello, world" || used[0].Len != 12 {
		t.Fatalf("got %+v, want head %d data %q", used[0], head, "hello, world")
	}
	if !irq.WaitCount(1, 5*time.Second) {
		t.Fatal("got no interrupt, want one")
	}
	if got := d.Ack(); got != 1 {
		t.Fatalf("got InterruptStatus %#x, want 1", got)
	}
	if got := read32(m, 0x60); got != 0 {
		t.Fatalf("got InterruptStatus %#x after ACK, want 0", got)
	}
	// Many round trips reuse descriptors and buffers.
	for i := 0; i < 100; i++ {
		if _, err := d.Add(0, [][]byte{{byte(i)}}, []uint32{1}); err != nil {
			t.Fatal(err)
		}
		d.Kick(0)
		u, err := d.WaitUsed(0, 1, 5*time.Second)
		if err != nil || len(u) != 1 || len(u[0].Data) != 1 || u[0].Data[0] != byte(i) {
			t.Fatalf("round %d: got %+v %v, want data %d", i, u, err, i)
		}
	}
}

func TestLegacyDriverRejected(t *testing.T) {
	mem := devicetest.NewMemory(1 << 20)
	m := virtio.NewMMIO(newEcho(1), mem, &devicetest.IRQRecorder{}, nil)
	_, err := devicetest.NewDriver(m, mem, devicetest.DriverOptions{RejectFeatures: virtio.FeatureVersion1})
	if !errors.Is(err, devicetest.ErrFeaturesRejected) {
		t.Fatalf("got %v, want ErrFeaturesRejected", err)
	}
}

func TestStatusStateMachine(t *testing.T) {
	tests := []struct {
		name   string
		writes []uint32
		want   uint32
	}{
		{"ack", []uint32{1}, 1},
		{"driver without ack", []uint32{2}, 0},
		{"features ok without driver", []uint32{1, 1 | 8}, 1},
		{"features ok without version 1", []uint32{1, 3, 3 | 8}, 3},
		{"driver ok without features ok", []uint32{1, 3, 3 | 4}, 3},
		{"clearing bits ignored", []uint32{1, 3, 1}, 3},
		{"failed", []uint32{1, 1 | 128}, 129},
		{"reset", []uint32{1, 3, 0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := virtio.NewMMIO(newEcho(1), devicetest.NewMemory(1<<20), &devicetest.IRQRecorder{}, nil)
			for _, w := range tc.writes {
				write32(m, 0x70, w)
			}
			if got := read32(m, 0x70); got != tc.want {
				t.Fatalf("got status %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestDriverOKNeedsAllQueues(t *testing.T) {
	dev := newEcho(2)
	m := virtio.NewMMIO(dev, devicetest.NewMemory(1<<20), &devicetest.IRQRecorder{}, nil)
	write32(m, 0x70, 1)
	write32(m, 0x70, 3)
	write32(m, 0x24, 1)
	write32(m, 0x20, 1) // VERSION_1
	write32(m, 0x70, 3|8)
	write32(m, 0x70, 3|8|4)
	if got := read32(m, 0x70); got != 3|8|virtio.StatusDeviceNeedsReset {
		t.Fatalf("got status %#x, want %#x", got, 3|8|virtio.StatusDeviceNeedsReset)
	}
	if dev.activated != 0 {
		t.Fatalf("got %d activations, want 0", dev.activated)
	}
}

func TestQueueReadyRejectsBadLayout(t *testing.T) {
	tests := []struct {
		name              string
		num               uint32
		desc, avail, used uint64
	}{
		{"size zero", 0, 0x1000, 0x2000, 0x3000},
		{"size not power of 2", 3, 0x1000, 0x2000, 0x3000},
		{"size above max", 32, 0x1000, 0x2000, 0x3000},
		{"desc misaligned", 8, 0x1008, 0x2000, 0x3000},
		{"avail misaligned", 8, 0x1000, 0x2001, 0x3000},
		{"used misaligned", 8, 0x1000, 0x2000, 0x3002},
		{"desc outside RAM", 8, 1 << 20, 0x2000, 0x3000},
		{"used crosses end of RAM", 8, 0x1000, 0x2000, 1<<20 - 8},
		{"avail high bits", 8, 0x1000, 1<<32 | 0x2000, 0x3000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := virtio.NewMMIO(newEcho(1), devicetest.NewMemory(1<<20), &devicetest.IRQRecorder{}, nil)
			write32(m, 0x70, 1)
			write32(m, 0x70, 3)
			write32(m, 0x30, 0)
			write32(m, 0x38, tc.num)
			write32(m, 0x80, uint32(tc.desc))
			write32(m, 0x84, uint32(tc.desc>>32))
			write32(m, 0x90, uint32(tc.avail))
			write32(m, 0x94, uint32(tc.avail>>32))
			write32(m, 0xa0, uint32(tc.used))
			write32(m, 0xa4, uint32(tc.used>>32))
			write32(m, 0x44, 1)
			if got := read32(m, 0x44); got != 0 {
				t.Fatalf("got QueueReady %d, want 0", got)
			}
		})
	}
}

func TestResetStopsDevice(t *testing.T) {
	dev := newEcho(1)
	m, d, _, mem := setup(t, dev, devicetest.DriverOptions{})
	before := dev.resets
	d.Reset()
	if dev.resets != before+1 {
		t.Fatalf("got %d resets, want %d", dev.resets, before+1)
	}
	if got := m.Status(); got != 0 {
		t.Fatalf("got status %#x, want 0", got)
	}
	write32(m, 0x30, 0)
	if got := read32(m, 0x44); got != 0 {
		t.Fatalf("got QueueReady %d after reset, want 0", got)
	}
	// Notify after reset is ignored, and the device can come up again.
	write32(m, 0x50, 0)
	if _, err := devicetest.NewDriver(m, mem, devicetest.DriverOptions{MemBase: 2 << 20}); err != nil {
		t.Fatalf("renegotiate: %v", err)
	}
	if dev.activated != 2 {
		t.Fatalf("got %d activations, want 2", dev.activated)
	}
}

func TestNoInterruptRespected(t *testing.T) {
	dev := newEcho(1)
	// VRING_AVAIL_F_NO_INTERRUPT is ignored once EVENT_IDX is negotiated.
	_, d, irq, _ := setup(t, dev, devicetest.DriverOptions{RejectFeatures: virtio.FeatureRingEventIdx})
	if err := d.SetNoInterrupt(0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(0, [][]byte{{1}}, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	d.Kick(0)
	if _, err := d.WaitUsed(0, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := irq.Count(); got != 0 {
		t.Fatalf("got %d interrupts with NO_INTERRUPT, want 0", got)
	}
}

func TestConcurrentAccess(t *testing.T) {
	dev := newEcho(2)
	m, d, _, _ := setup(t, dev, devicetest.DriverOptions{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_ = read32(m, 0x60)
				write32(m, 0x64, 1)
				_ = read32(m, 0x70)
				write32(m, 0x50, uint32(i%2))
			}
		}()
	}
	for i := 0; i < 50; i++ {
		if _, err := d.Add(i%2, [][]byte{{byte(i)}}, []uint32{1}); err != nil {
			t.Fatal(err)
		}
		d.Kick(i % 2)
		u, err := d.WaitUsed(i%2, 1, 5*time.Second)
		if err != nil || len(u) != 1 || u[0].Data[0] != byte(i) {
			t.Fatalf("round %d: got %+v %v, want data %d", i, u, err, i)
		}
	}
	wg.Wait()
}

func TestStatsCountKicksAndInterrupts(t *testing.T) {
	dev := newEcho(2)
	// Without EVENT_IDX every used buffer interrupts, so the counts are exact.
	m, d, irq, _ := setup(t, dev, devicetest.DriverOptions{RejectFeatures: virtio.FeatureRingEventIdx})
	for i := range 3 {
		if _, err := d.Add(1, [][]byte{{byte(i)}}, []uint32{1}); err != nil {
			t.Fatal(err)
		}
		d.Kick(1)
		if _, err := d.WaitUsed(1, 1, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if !irq.WaitCount(3, 5*time.Second) {
		t.Fatal("got fewer than 3 interrupts")
	}
	st := m.Stats()
	if len(st) != 2 {
		t.Fatalf("got %d queues, want 2", len(st))
	}
	q := st[1]
	if !q.Ready || q.Kicks != 3 || q.Interrupts != 3 || q.LastKick.IsZero() || q.LastInterrupt.IsZero() {
		t.Errorf("queue 1: got %+v, want ready, 3 kicks, 3 interrupts, times set", q)
	}
	if ix := q.Indices; ix.AvailIdx != 3 || ix.NextAvail != 3 || ix.UsedIdx != 3 || ix.NextUsed != 3 {
		t.Errorf("queue 1 indices: got %+v, want all 3", ix)
	}
	if q0 := st[0]; q0.Kicks != 0 || !q0.LastKick.IsZero() {
		t.Errorf("queue 0: got %+v, want no kicks", q0)
	}
	text := strings.Join(m.DebugState(), "\n")
	for _, want := range []string{"queue 1: ready=true", "avail_idx=3", "next_used=3 pending=0 kicks=3", "interrupts=3 suppressed=0", "queue 0: ready=true", "last_kick_ago=never", "last_ack_ago=never"} {
		if !strings.Contains(text, want) {
			t.Errorf("debug state lacks %q:\n%s", want, text)
		}
	}
	// The driver's acknowledgement dates when the guest last ran its
	// interrupt handler.
	if got := d.Ack(); got == 0 {
		t.Fatal("no interrupt status to acknowledge")
	}
	if text := m.DebugState()[0]; !strings.Contains(text, "last_ack_ago=0.0") {
		t.Errorf("after an acknowledgement: %q, want last_ack_ago=0.0...", text)
	}
}

// TestEventIdx runs the echo device with VIRTIO_RING_F_EVENT_IDX: the
// device interrupts only when the used index passes the driver's
// used_event, and publishes avail_event when it has drained the ring.
func TestEventIdx(t *testing.T) {
	dev := newEcho(1)
	_, d, irq, _ := setup(t, dev, devicetest.DriverOptions{})
	if d.Features()&virtio.FeatureRingEventIdx == 0 {
		t.Fatalf("got features %#x, want EVENT_IDX offered", d.Features())
	}
	roundTrip := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := d.Add(0, [][]byte{{byte(i)}}, []uint32{1}); err != nil {
				t.Fatal(err)
			}
		}
		before := dev.drains()
		d.Kick(0)
		if _, err := d.WaitUsed(0, n, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		// The device writes avail_event when it finds the ring empty,
		// after its last push: wait for that pass to end.
		dev.waitDrained(t, before)
	}
	// used_event 2: no interrupt for used index 1, one when it reaches 3.
	if err := d.SetUsedEvent(0, 2); err != nil {
		t.Fatal(err)
	}
	roundTrip(1)
	if got := irq.Count(); got != 0 {
		t.Fatalf("got %d interrupts at used index 1 with used_event 2, want 0", got)
	}
	if got, err := d.AvailEvent(0); err != nil || got != 1 {
		t.Fatalf("got avail_event %d (%v) after one chain, want 1", got, err)
	}
	roundTrip(2)
	if !irq.WaitCount(1, 5*time.Second) {
		t.Fatalf("got %d interrupts at used index 3 with used_event 2, want 1", irq.Count())
	}
	// A hostile used_event far behind or ahead only changes whether the
	// driver is interrupted.
	if err := d.SetUsedEvent(0, 0x8000); err != nil {
		t.Fatal(err)
	}
	roundTrip(1)
	if got, err := d.AvailEvent(0); err != nil || got != 4 {
		t.Fatalf("got avail_event %d (%v) after four chains, want 4", got, err)
	}
}

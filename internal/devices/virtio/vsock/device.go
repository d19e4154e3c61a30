package vsock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// VirtIO 1.1 §5.10.1-§5.10.4: device ID, virtqueues and configuration.
const (
	// DeviceID is the virtio device type of vsock (VirtIO 1.1 §5.10.1).
	DeviceID = 19
	// rxQueue receives packets from the device (device-writable buffers).
	rxQueue = 0
	// txQueue carries packets from the driver (device-readable buffers).
	txQueue = 1
	// eventQueue carries transport events; the device never sends any
	// (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET is for migration).
	eventQueue = 2
	// numQueues is the number of virtqueues (§5.10.2).
	numQueues = 3
	// QueueSize is the maximum size of each queue.
	QueueSize = 256
	// configSizeBytes is struct virtio_vsock_config { __le64 guest_cid; }.
	configSizeBytes = 8
)

// Device is the virtio-vsock device. It implements virtio.Device and
// Connector.
type Device struct {
	guestCID uint64
	logger   *slog.Logger
	m        *mux
	kick     chan struct{} // wakes the worker; capacity 1.

	mu      sync.Mutex // guards the fields below.
	queues  []*virtio.Queue
	signal  virtio.Signaler
	stop    chan struct{}
	stopped chan struct{}
	closed  bool
}

// New returns a vsock device for a guest with context ID guestCID whose
// connections to the parent (CID 3) and host (CID 2) go to backend.
func New(guestCID uint64, backend Backend, logger *slog.Logger) (*Device, error) {
	if guestCID < MinGuestCID || guestCID >= math.MaxUint32 {
		return nil, fmt.Errorf("vsock: guest CID %d out of range [%d, %d)", guestCID, MinGuestCID, uint64(math.MaxUint32))
	}
	if backend == nil {
		return nil, errors.New("vsock: nil backend")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Device{guestCID: guestCID, logger: logger, kick: make(chan struct{}, 1)}
	d.m = newMux(guestCID, backend, logger, d.wake)
	return d, nil
}

// wake makes the worker run; it never blocks.
func (d *Device) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// OnIdle sets f to be called (on its own goroutine) IdleDelay after the
// last open connection ended, e.g. to hand freed connection buffers back
// to the operating system at once (runtime/debug.FreeOSMemory).
func (d *Device) OnIdle(f func()) {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	d.m.onIdle = f
}

// Idle reports whether the device has no open connection.
func (d *Device) Idle() bool { return d.m.numConns() == 0 }

// GuestCID returns the guest's context ID.
func (d *Device) GuestCID() uint64 { return d.guestCID }

// DeviceID implements virtio.Device.DeviceID.
func (d *Device) DeviceID() uint32 { return DeviceID }

// Features implements virtio.Device.Features. Only stream sockets are
// offered, which needs no feature bit (VirtIO 1.1 §5.10.3).
func (d *Device) Features() uint64 { return 0 }

// QueueMaxSizes implements virtio.Device.QueueMaxSizes: rx, tx, event.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

// ReadConfig implements virtio.Device.ReadConfig: the guest CID as a
// little-endian u64 (VirtIO 1.1 §5.10.4).
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [configSizeBytes]byte
	binary.LittleEndian.PutUint64(cfg[:], d.guestCID)
	clear(data)
	if offset < configSizeBytes {
		copy(data, cfg[offset:])
	}
}

// WriteConfig implements virtio.Device.WriteConfig; the configuration is
// read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device.Activate: it starts the worker that
// moves packets between the queues and the connections.
func (d *Device) Activate(mem *memory.Guest, queues []*virtio.Queue, signal virtio.Signaler) error {
	if len(queues) != numQueues {
		return fmt.Errorf("vsock: activate with %d queues, want %d", len(queues), numQueues)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.stop != nil {
		return errors.New("vsock: device already active")
	}
	d.queues = queues
	d.signal = signal
	d.stop = make(chan struct{})
	d.stopped = make(chan struct{})
	go d.run(queues, signal, d.stop, d.stopped)
	d.wake() // the driver may have filled queues before DRIVER_OK.
	return nil
}

// Notify implements virtio.Device.Notify. It never blocks.
func (d *Device) Notify(queue int) {
	if queue == txQueue {
		d.m.txKickAt.Store(time.Now().UnixNano())
	}
	d.wake()
}

// Reset implements virtio.Device.Reset: the worker stops and every
// connection is dropped (host streams are closed, the guest is not told).
func (d *Device) Reset() {
	d.stopWorker()
	d.m.reset()
}

// Close resets the device for good, closes every host stream and waits for
// the device's goroutines.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.stopWorker()
	d.m.close()
	return nil
}

func (d *Device) stopWorker() {
	d.mu.Lock()
	stop, stopped := d.stop, d.stopped
	d.stop, d.stopped, d.queues, d.signal = nil, nil, nil, nil
	d.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
}

// ConnectGuest implements Connector.ConnectGuest.
func (d *Device) ConnectGuest(ctx context.Context, port uint32, stream Stream, onConnect func(hostPort uint32) error) error {
	return d.m.connectGuest(ctx, port, stream, onConnect)
}

// run is the device's worker: it alone pops and pushes the queues. It
// drains every available tx chain and fills every rx buffer it has data
// for before signalling each queue once, and reuses one Chain per queue,
// so the steady path allocates nothing.
func (d *Device) run(queues []*virtio.Queue, signal virtio.Signaler, stop, stopped chan struct{}) {
	defer close(stopped)
	rx, tx := queues[rxQueue], queues[txQueue]
	var txc, rxc virtio.Chain
	popRx := func() (rxBuffer, error) {
		ok, err := rx.PopInto(&rxc)
		if !ok {
			return nil, err
		}
		return &rxc, err
	}
	pushRx := func(rxBuffer) {
		if err := rx.Push(&rxc); err != nil {
			d.logger.Warn("vsock: rx push", "err", err)
		}
	}
	for {
		select {
		case <-stop:
			return
		case <-d.kick:
		}
		if d.processTx(tx, &txc) {
			if err := signal.SignalUsed(txQueue); err != nil {
				d.logger.Warn("vsock: signal tx", "err", err)
			}
		}
		if d.m.fillRx(popRx, pushRx) > 0 {
			if err := signal.SignalUsed(rxQueue); err != nil {
				d.logger.Warn("vsock: signal rx", "err", err)
			}
		}
	}
}

// processTx handles every packet the driver queued on tx (VirtIO 1.1
// §5.10.6.2), popping into c, and reports whether any buffer was used.
func (d *Device) processTx(tx *virtio.Queue, c *virtio.Chain) bool {
	used := false
	for i := 0; ; i++ {
		if i == int(tx.Size()) {
			// A guest that keeps refilling tx must not starve rx: take a
			// turn at rx and come back.
			d.wake()
			return used
		}
		ok, err := tx.PopInto(c)
		if !ok {
			if err != nil {
				d.logger.Warn("vsock: tx queue", "err", err)
			}
			return used
		}
		used = true
		if err == nil {
			err = d.readPacket(c)
		}
		if err != nil {
			d.logger.Debug("vsock: dropping tx packet", "err", err)
		}
		if err := tx.Push(c); err != nil {
			d.logger.Warn("vsock: tx push", "err", err)
		}
	}
}

// readPacket reads one packet from a tx chain and hands it to the mux,
// which copies its payload straight out of the chain.
func (d *Device) readPacket(c *virtio.Chain) error {
	var hb [HeaderSize]byte
	if n, _ := c.Read(hb[:]); n < HeaderSize {
		return fmt.Errorf("read header from chain %d: %d of %d bytes", c.Head(), n, HeaderSize)
	}
	h, err := DecodeHeader(hb[:])
	if err != nil {
		return err
	}
	if h.Len > MaxPacketPayloadBytes || uint64(c.ReadableLen()) < HeaderSize+uint64(h.Len) {
		d.m.malformed(h)
		return fmt.Errorf("packet %v: payload does not fit chain of %d bytes", h, c.ReadableLen())
	}
	d.m.handlePacketFrom(h, c)
	return nil
}

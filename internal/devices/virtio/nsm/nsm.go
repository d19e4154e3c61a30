// Package nsm implements the virtio-nsm device, the transport of the Nitro
// Secure Module (virtio device ID 33; no configuration space, one queue).
// It only frames requests and responses; the protocol itself (CBOR
// requests, PCRs, attestation) is a Processor, normally package nsm's
// Module.
//
// # Framing
//
// Linux's drivers/misc/nsm.c (nsm_sendrecv_msg_locked) posts two chains per
// request and kicks once: a device-readable chain holding the request
// (at most RequestMaxBytes) and a device-writable chain of ResponseMaxBytes
// for the response. It then expects two used entries, the request chain
// first, then the response chain with the response length. The device also
// accepts a single chain with a readable request followed by a writable
// response buffer.
//
// # Security
//
// Every chain comes from an untrusted guest. Malformed chains are returned
// with nothing written; bad framing is answered with a CBOR error response
// ({"Error":"InvalidArgument"|"InputTooLarge"|"BufferTooSmall"}) when the
// response buffer has room for it, or with 0 bytes otherwise. The device
// never stops serving the queue because of one bad request.
package nsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// Device constants (REFERENCE §3; Linux drivers/misc/nsm.c).
const (
	// DeviceID is the virtio device type of the NSM (VIRTIO_ID_NITRO_SEC_MOD).
	DeviceID = 33
	// RequestMaxBytes is the largest request the device accepts
	// (NSM_REQUEST_MAX_SIZE).
	RequestMaxBytes = 0x1000
	// ResponseMaxBytes is the response buffer size Linux posts
	// (NSM_RESPONSE_MAX_SIZE).
	ResponseMaxBytes = 0x3000
	// QueueSize is the maximum size of the device's only queue; each
	// request takes one or two descriptors.
	QueueSize = 64
)

// Error names the device itself answers with (the NSM protocol's ErrorCode
// spelling).
const (
	ErrorInvalidArgument = "InvalidArgument"
	ErrorInputTooLarge   = "InputTooLarge"
	ErrorBufferTooSmall  = "BufferTooSmall"
	ErrorInternalError   = "InternalError"
)

// Processor handles one NSM request (the nsm library's *nsm.Module
// implements it). It is called from the device's goroutine, one request at
// a time.
type Processor interface {
	// Process returns the CBOR response to the CBOR request.
	Process(request []byte) []byte
}

// Device is the virtio-nsm device model. It implements virtio.Device.
type Device struct {
	p      Processor
	logger *slog.Logger

	mu     sync.Mutex
	kick   chan struct{} // nil when not active.
	stop   chan struct{}
	onIdle func()      // called IdleDelay after the last request was answered.
	idle   *time.Timer // pending onIdle call.
	wg     sync.WaitGroup
}

// IdleDelay is how long the device waits after answering a request before
// calling the OnIdle hook, so that a burst of requests calls it once.
const IdleDelay = 200 * time.Millisecond

// OnIdle sets f to be called (on its own goroutine) IdleDelay after the
// device last answered a request, e.g. to drop what serving it brought into
// memory. A guest kernel that feeds its entropy pool from the NSM (Linux's
// nsm-hwrng) makes a request every few seconds to a minute while the
// enclave is otherwise idle.
func (d *Device) OnIdle(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onIdle = f
}

// answered arms the OnIdle hook after a drain that answered requests.
func (d *Device) answered() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.onIdle == nil || d.kick == nil {
		return
	}
	if d.idle == nil {
		d.idle = time.AfterFunc(IdleDelay, d.onIdle)
	} else {
		d.idle.Reset(IdleDelay)
	}
}

// New returns a virtio-nsm device answering requests with p.
func New(p Processor, logger *slog.Logger) *Device {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Device{p: p, logger: logger}
}

// DeviceID implements virtio.Device.DeviceID.
func (d *Device) DeviceID() uint32 { return DeviceID }

// Features implements virtio.Device.Features: the NSM has no feature bits.
func (d *Device) Features() uint64 { return 0 }

// QueueMaxSizes implements virtio.Device.QueueMaxSizes: one queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device.ReadConfig: there is no config space.
func (d *Device) ReadConfig(offset uint64, data []byte) { clear(data) }

// WriteConfig implements virtio.Device.WriteConfig: writes are ignored.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device.Activate: it starts the goroutine that
// serves the queue.
func (d *Device) Activate(mem *memory.Guest, queues []*virtio.Queue, signal virtio.Signaler) error {
	if len(queues) != 1 {
		return fmt.Errorf("nsm: activate with %d queues, want 1", len(queues))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kick != nil {
		return errors.New("nsm: device already active")
	}
	d.kick, d.stop = make(chan struct{}, 1), make(chan struct{})
	d.kick <- struct{}{} // serve anything posted before DRIVER_OK.
	d.wg.Add(1)
	go d.run(queues[0], signal, d.kick, d.stop)
	return nil
}

// Notify implements virtio.Device.Notify; it never blocks.
func (d *Device) Notify(queue int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kick == nil {
		return
	}
	select {
	case d.kick <- struct{}{}:
	default: // a wake-up is already pending.
	}
}

// Reset implements virtio.Device.Reset: it stops the goroutine and waits for
// the request in progress, if any.
func (d *Device) Reset() {
	d.mu.Lock()
	stop := d.stop
	d.kick, d.stop = nil, nil
	if d.idle != nil {
		d.idle.Stop()
	}
	d.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	d.wg.Wait()
}

// run serves the queue until stop is closed.
func (d *Device) run(q *virtio.Queue, signal virtio.Signaler, kick, stop <-chan struct{}) {
	defer d.wg.Done()
	s := server{d: d, q: q, signal: signal}
	broken := false
	for {
		select {
		case <-stop:
			return
		case <-kick:
		}
		before := s.answered
		if err := s.drain(stop); err != nil && !broken {
			broken = true // log once: the guest may keep kicking.
			d.logger.Warn("nsm: queue unusable until reset", "err", err)
		}
		if s.answered != before {
			d.answered()
		}
	}
}

// server is the state of one activation's queue.
type server struct {
	d      *Device
	q      *virtio.Queue
	signal virtio.Signaler
	// pending is a request-only chain waiting for its response chain.
	pending *virtio.Chain
	// answered counts the requests answered.
	answered uint64
}

// drain answers every chain on the available ring.
func (s *server) drain(stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		c, err := s.q.Pop()
		if err != nil {
			if c == nil {
				return err
			}
			s.d.logger.Warn("nsm: malformed chain returned empty", "err", err)
			s.flushPending()
			s.push(c)
			s.notify()
			continue
		}
		if c == nil {
			return nil
		}
		s.handle(c)
	}
}

// handle frames one chain.
func (s *server) handle(c *virtio.Chain) {
	hasReq, hasResp := c.ReadableLen() > 0, c.WritableLen() > 0
	switch {
	case hasReq && hasResp:
		s.flushPending()
		s.answer(c, c)
		s.push(c)
	case hasReq:
		// Linux's request chain; the response chain should follow.
		s.flushPending()
		s.pending = c
		return
	case hasResp && s.pending != nil:
		req := s.pending
		s.pending = nil
		s.answer(req, c)
		s.push(req)
		s.push(c)
	case hasResp:
		s.d.logger.Debug("nsm: response buffer without a request")
		s.writeError(c, ErrorInvalidArgument)
		s.push(c)
	default:
		s.flushPending()
		s.d.logger.Debug("nsm: empty chain")
		s.push(c)
	}
	s.notify()
}

// flushPending returns a request chain that got no response chain.
func (s *server) flushPending() {
	if s.pending == nil {
		return
	}
	s.d.logger.Debug("nsm: request without a response buffer dropped", "head", s.pending.Head())
	s.push(s.pending)
	s.pending = nil
	s.notify()
}

// answer reads the request from req and writes the response into resp.
func (s *server) answer(req, resp *virtio.Chain) {
	s.answered++
	if req.ReadableLen() > RequestMaxBytes {
		s.writeError(resp, ErrorInputTooLarge)
		return
	}
	b := make([]byte, req.ReadableLen())
	if _, err := io.ReadFull(req, b); err != nil {
		s.d.logger.Warn("nsm: read request", "err", err)
		s.writeError(resp, ErrorInternalError)
		return
	}
	out := s.process(b)
	if out == nil {
		s.writeError(resp, ErrorInternalError)
		return
	}
	if uint64(len(out)) > uint64(resp.WritableLen()) {
		s.writeError(resp, ErrorBufferTooSmall)
		return
	}
	if _, err := resp.Write(out); err != nil {
		s.d.logger.Warn("nsm: write response", "err", err)
	}
}

// process calls the Processor, turning a panic into an InternalError so
// that a library bug cannot take the VMM down.
func (s *server) process(req []byte) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.d.logger.Error("nsm: processor panicked", "panic", r)
			out = nil
		}
	}()
	return s.d.p.Process(req)
}

// writeError writes {"Error": name} into c if it fits, else nothing.
func (s *server) writeError(c *virtio.Chain, name string) {
	e := ErrorResponse(name)
	if uint64(len(e)) > uint64(c.WritableLen()-c.Written()) {
		return
	}
	_, _ = c.Write(e)
}

// push puts c on the used ring; failures are logged (they only happen for
// programming errors such as a double push).
func (s *server) push(c *virtio.Chain) {
	if err := s.q.Push(c); err != nil {
		s.d.logger.Error("nsm: push used buffer", "err", err)
	}
}

// notify raises the used-buffer interrupt.
func (s *server) notify() {
	if err := s.signal.SignalUsed(0); err != nil {
		s.d.logger.Warn("nsm: signal used buffer", "err", err)
	}
}

// ErrorResponse returns the CBOR encoding of the NSM error response
// {"Error": name} (a one-entry map with text key and value, as serde_cbor
// writes it). Names longer than 255 bytes are truncated.
func ErrorResponse(name string) []byte {
	if len(name) > 255 {
		name = name[:255]
	}
	b := make([]byte, 0, 9+len(name))
	b = append(b, 0xa1, 0x65) // map(1), text(5)
	b = append(b, "Error"...)
	if len(name) < 24 {
		b = append(b, 0x60+byte(len(name))) // text(len)
	} else {
		b = append(b, 0x78, byte(len(name))) // text, 1-byte length
	}
	return append(b, name...)
}

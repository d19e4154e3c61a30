package vsock

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// mux is the connection table between the guest and the backend. Packets
// from the guest enter through handlePacket; packets to the guest leave
// through fillRx. It knows nothing about virtqueues, so the state machine
// is testable with a simulated guest driver.
type mux struct {
	guestCID uint64
	backend  Backend
	logger   *slog.Logger
	wake     func() // tells the device's worker that packets are pending; must not block.

	ctx    context.Context // cancelled by close; bounds Backend.ConnectHost.
	cancel context.CancelFunc
	wg     sync.WaitGroup // pump and connect goroutines.

	mu       sync.Mutex
	closed   bool
	conns    map[connKey]*conn
	ready    []*conn          // connections with a pending packet, round robin, from readyAt.
	readyAt  int              // index of the first live entry of ready.
	hdr      [HeaderSize]byte // fillRx's header scratch (the worker's, under mu).
	resets   []Header         // resets for packets that match no connection.
	nextPort uint32           // next host port for host-initiated connections.
	onIdle   func()           // called IdleDelay after the last connection ended.
	idle     *time.Timer      // pending onIdle call.
	history  controlHistory   // the last control packets, for DebugState.
	txKickAt atomic.Int64     // unix nanoseconds of the guest's last tx kick, 0: none yet (Device.Notify).
}

// IdleDelay is how long the device waits after its last connection ended
// before calling the OnIdle hook, so that a burst of closes calls it once.
const IdleDelay = 200 * time.Millisecond

// Host ports used for host-initiated connections.
const (
	firstHostPort = 0x4000_0000
	lastHostPort  = 0x7fff_ffff
)

func newMux(guestCID uint64, backend Backend, logger *slog.Logger, wake func()) *mux {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mux{
		guestCID: guestCID,
		backend:  backend,
		logger:   logger,
		wake:     wake,
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[connKey]*conn),
		nextPort: firstHostPort,
	}
	return m
}

// newConn adds a connection to the table.
//
// Preconditions: the mux lock is held.
func (m *mux) newConn(key connKey, state connState) *conn {
	c := &conn{key: key, state: state, readerCond: sync.NewCond(&m.mu), writerCond: sync.NewCond(&m.mu)}
	m.conns[key] = c
	return c
}

// markReady queues c for the worker if it has a packet to send.
//
// Preconditions: the mux lock is held.
func (m *mux) markReady(c *conn) {
	if c.queued || c.dead || !c.pending() {
		return
	}
	c.queued = true
	if m.readyAt > 0 && len(m.ready) == cap(m.ready) {
		// Slide the live entries to the front rather than grow.
		n := copy(m.ready, m.ready[m.readyAt:])
		clear(m.ready[n:])
		m.ready, m.readyAt = m.ready[:n], 0
	}
	m.ready = append(m.ready, c)
	m.wake()
}

// queueReset queues a RST answering the guest packet h.
//
// Preconditions: the mux lock is held.
func (m *mux) queueReset(h Header) {
	if len(m.resets) >= MaxPendingResets {
		m.logger.Debug("vsock: reset queue full, dropping", "packet", h)
		return
	}
	m.resets = append(m.resets, Header{
		SrcCID:  h.DstCID,
		DstCID:  h.SrcCID,
		SrcPort: h.DstPort,
		DstPort: h.SrcPort,
		Type:    VIRTIO_VSOCK_TYPE_STREAM,
		Op:      VIRTIO_VSOCK_OP_RST,
	})
	m.wake()
}

// terminate removes c, sending the guest a RST if rst is set.
//
// Preconditions: the mux lock is held.
func (m *mux) terminate(c *conn, rst bool) {
	if c.dead {
		return
	}
	c.dead = true
	delete(m.conns, c.key)
	if len(m.conns) == 0 && m.onIdle != nil && !m.closed {
		if m.idle == nil {
			m.idle = time.AfterFunc(IdleDelay, m.onIdle)
		} else {
			m.idle.Reset(IdleDelay)
		}
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.connected != nil {
		select {
		case c.connected <- ErrConnRefused:
		default:
		}
	}
	if rst && !m.closed {
		m.queueReset(Header{SrcCID: m.guestCID, DstCID: c.key.hostCID, SrcPort: c.key.guestPort, DstPort: c.key.hostPort})
	}
	c.in.reset()
	c.out.reset()
	c.readerCond.Broadcast()
	c.writerCond.Broadcast()
	if c.ownsStream && c.stream != nil {
		s := c.stream
		// Close may take time (TLS, TCP linger); never under the lock.
		go func() { _ = s.Close() }()
	}
}

// payloadSource is where the payload of a guest packet is read from: the
// tx descriptor chain itself, so that data is copied once, into the
// connection's queue.
type payloadSource interface {
	Read(p []byte) (int, error)
}

// handlePacket processes one packet the guest sent, whose payload is
// payload (tests and fuzzing; the device uses handlePacketFrom).
func (m *mux) handlePacket(h Header, payload []byte) {
	h.Len = uint32(len(payload))
	m.handlePacketFrom(h, bytes.NewReader(payload))
}

// handlePacketFrom processes one packet the guest sent. Its h.Len payload
// bytes are read from src only if the packet carries data for a
// connection; src must hold them (the device checked the chain's length).
func (m *mux) handlePacketFrom(h Header, src payloadSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if isControl(h.Op) {
		var kickAt time.Time
		if t := m.txKickAt.Load(); t != 0 { // loaded before now: never after it.
			kickAt = time.Unix(0, t)
		}
		m.history.add(time.Now(), h, false, kickAt)
	}
	if h.SrcCID != m.guestCID {
		m.logger.Debug("vsock: dropping packet with spoofed source", "packet", h)
		return
	}
	if (h.DstCID != ParentCID && h.DstCID != VMADDR_CID_HOST) || h.Type != VIRTIO_VSOCK_TYPE_STREAM {
		if h.Op != VIRTIO_VSOCK_OP_RST {
			m.queueReset(h)
		}
		return
	}
	key := connKey{hostCID: h.DstCID, hostPort: h.DstPort, guestPort: h.SrcPort}
	c := m.conns[key]
	if c == nil {
		switch h.Op {
		case VIRTIO_VSOCK_OP_REQUEST:
			m.guestConnect(key, h)
		case VIRTIO_VSOCK_OP_RST:
		default:
			m.queueReset(h)
		}
		return
	}
	c.peerBufAlloc = h.BufAlloc
	c.peerFwdCnt = h.FwdCnt
	m.roomGrew(c) // the guest's credit may have grown.
	if c.dead {
		return
	}

	switch h.Op {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if c.state != stateHostConnecting {
			m.terminate(c, true)
			return
		}
		c.state = stateEstablished
		c.timer.Stop()
		c.connected <- nil
		c.connected = nil
	case VIRTIO_VSOCK_OP_RST:
		m.terminate(c, false)
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if c.state != stateEstablished && c.state != stateClosing {
			m.terminate(c, true)
			return
		}
		c.peerShut |= h.Flags & shutdownBoth
		if c.peerShut&VIRTIO_VSOCK_SHUTDOWN_RCV != 0 {
			c.out.reset() // the guest will read no more.
			c.readerCond.Broadcast()
		}
		if c.peerShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0 {
			c.writerCond.Broadcast() // flush, then close the stream's sending side.
		}
		m.checkDone(c)
	case VIRTIO_VSOCK_OP_RW:
		if c.state != stateEstablished || c.peerShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0 {
			m.terminate(c, true)
			return
		}
		if uint64(c.rxCnt-c.fwdCnt)+uint64(h.Len) > ConnBufBytes {
			m.logger.Warn("vsock: guest exceeded its credit, resetting connection", "conn", c.key)
			m.terminate(c, true)
			return
		}
		n := int(h.Len)
		if lp, ok := src.(lentPayload); ok && c.raw != nil && c.in.Len() == 0 && !c.writing && n > 0 {
			k, err := c.writeDirect(lp, n)
			if err != nil {
				m.logger.Debug("vsock: host stream write", "conn", c.key, "err", err)
				m.terminate(c, true)
				return
			}
			c.rxCnt += uint32(k)
			c.fwdCnt += uint32(k)
			n -= k
			m.maybeCreditUpdate(c)
		}
		if err := c.in.pushFrom(src, n); err != nil {
			m.logger.Debug("vsock: reading payload", "conn", c.key, "err", err)
			m.terminate(c, true)
			return
		}
		c.rxCnt += uint32(n)
		if n > 0 {
			c.writerCond.Broadcast()
		}
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c.sendCreditUpdate = true
		m.markReady(c)
	default: // REQUEST on an existing connection, or an unknown op.
		m.terminate(c, true)
	}
}

// guestConnect handles a REQUEST for a new connection.
//
// Preconditions: the mux lock is held.
func (m *mux) guestConnect(key connKey, h Header) {
	if len(m.conns) >= MaxConns {
		m.logger.Warn("vsock: connection limit reached, refusing", "max", MaxConns, "port", key.hostPort)
		m.queueReset(h)
		return
	}
	c := m.newConn(key, stateGuestConnecting)
	c.peerBufAlloc = h.BufAlloc
	c.peerFwdCnt = h.FwdCnt
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, HostConnectTimeout)
		s, err := m.backend.ConnectHost(ctx, key.hostCID, key.hostPort, key.guestPort)
		cancel()
		m.mu.Lock()
		defer m.mu.Unlock()
		if c.dead || m.closed {
			if err == nil {
				go func() { _ = s.Close() }()
			}
			if !c.dead {
				m.terminate(c, false)
			}
			return
		}
		if err != nil {
			m.logger.Debug("vsock: refusing guest connection", "cid", key.hostCID, "port", key.hostPort, "err", err)
			m.terminate(c, true)
			return
		}
		c.stream = s
		c.ownsStream = true
		c.state = stateEstablished
		c.sendResponse = true
		m.markReady(c)
		m.startPumps(c)
	}()
}

// connectGuest implements Connector.ConnectGuest.
func (m *mux) connectGuest(ctx context.Context, port uint32, stream Stream, onConnect func(uint32) error) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if len(m.conns) >= MaxConns {
		m.mu.Unlock()
		return ErrTooManyConns
	}
	key := connKey{hostCID: ParentCID, guestPort: port}
	for {
		key.hostPort = m.nextPort
		m.nextPort++
		if m.nextPort > lastHostPort {
			m.nextPort = firstHostPort
		}
		if m.conns[key] == nil {
			break
		}
	}
	c := m.newConn(key, stateHostConnecting)
	c.stream = stream
	connected := make(chan error, 1)
	c.connected = connected
	// ConnRequestTimeout starts when the request reaches the guest's rx
	// queue (nextConnPacket), not here: requests queued behind others
	// while the guest has no rx buffers have not been seen yet, and a
	// burst of them must not time out for the device's own backlog
	// (Firecracker arms its request timer the same way).
	// ConnQueueTimeout bounds the wait for a guest that gives no rx
	// buffers at all.
	c.sendRequest = true
	m.armTimer(c, ConnQueueTimeout, func() { m.requestTimedOut(c) })
	m.markReady(c)
	m.mu.Unlock()

	var err error
	select {
	case err = <-connected:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil && onConnect != nil {
		if err = onConnect(key.hostPort); err != nil {
			err = fmt.Errorf("vsock: connection to guest port %d: %w", port, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil && c.dead {
		err = ErrConnRefused
	}
	if err != nil {
		m.terminate(c, true) // no-op if already gone; c does not own stream.
		return err
	}
	c.ownsStream = true
	m.startPumps(c)
	return nil
}

// requestTimedOut ends c if the guest has not answered its connection
// request; armed when the request is handed to the guest.
//
// Preconditions: the mux lock is held.
func (m *mux) requestTimedOut(c *conn) {
	if c.state != stateHostConnecting {
		return
	}
	select {
	case c.connected <- ErrTimeout:
	default:
	}
	m.terminate(c, true)
}

// rxBuffer is a buffer the guest gave for received packets (a virtqueue
// chain of device-writable descriptors).
type rxBuffer interface {
	WritableLen() uint32
	Write(p []byte) (int, error)
}

// fillRx writes pending packets into guest buffers: pop returns the next
// buffer (nil when the guest has none), done hands a buffer back. Each
// packet's data is copied once, from the connection's queue straight into
// the buffer. It returns how many buffers were handed back.
func (m *mux) fillRx(pop func() (rxBuffer, error), done func(rxBuffer)) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	used := 0
	for m.pendingLocked() {
		b, err := pop()
		if err != nil {
			m.logger.Debug("vsock: bad rx buffer", "err", err)
			if b != nil {
				done(b)
				used++
				continue
			}
			break
		}
		if b == nil {
			break
		}
		used++
		room := int(b.WritableLen())
		if room < HeaderSize {
			m.logger.Debug("vsock: rx buffer too small", "bytes", room)
			done(b)
			continue
		}
		h, c, ok := m.nextPacketLocked(min(room-HeaderSize, MaxPacketPayloadBytes))
		if !ok {
			done(b)
			break
		}
		if isControl(h.Op) {
			m.history.add(time.Now(), h, true, time.Time{})
		}
		h.Encode(m.hdr[:])
		_, err = b.Write(m.hdr[:])
		if err == nil && h.Len > 0 {
			_, err = c.out.writeTo(b, int(h.Len))
			// A reader of a stream with a file descriptor is left waiting
			// until c.out is empty, then read for (roomGrew).
			if c.raw == nil || c.out.Len() == 0 {
				m.roomGrew(c)
			}
		}
		if err != nil {
			m.logger.Debug("vsock: writing rx buffer", "err", err)
		}
		done(b)
	}
	return used
}

// pendingLocked reports whether a packet waits for the guest.
//
// Preconditions: the mux lock is held.
func (m *mux) pendingLocked() bool {
	if len(m.resets) > 0 {
		return true
	}
	for m.readyAt < len(m.ready) && (m.ready[m.readyAt].dead || !m.ready[m.readyAt].pending()) {
		m.ready[m.readyAt].queued = false
		m.popReady()
	}
	return m.readyAt < len(m.ready)
}

// popReady drops the first entry of the ready list.
//
// Preconditions: the mux lock is held; the list is not empty.
func (m *mux) popReady() {
	m.ready[m.readyAt] = nil
	m.readyAt++
	if m.readyAt == len(m.ready) {
		m.ready, m.readyAt = m.ready[:0], 0
	}
}

// nextPacketLocked returns the next packet for the guest, with at most
// maxPayload data bytes, and the connection whose out queue holds its
// h.Len data bytes (nil for a reset).
//
// Preconditions: the mux lock is held.
func (m *mux) nextPacketLocked(maxPayload int) (Header, *conn, bool) {
	if len(m.resets) > 0 {
		h := m.resets[0]
		m.resets = m.resets[1:]
		if len(m.resets) == 0 {
			m.resets = nil
		}
		return h, nil, true
	}
	// Each connection gets one look: one whose packet does not fit
	// (a hostile 44-byte rx buffer leaves no room for data) goes back in
	// line, and looking again would spin forever under the lock.
	for n := len(m.ready) - m.readyAt; n > 0 && m.readyAt < len(m.ready); n-- {
		c := m.ready[m.readyAt]
		m.popReady()
		c.queued = false
		if c.dead {
			continue
		}
		h, ok := m.nextConnPacket(c, maxPayload)
		m.markReady(c) // round robin: back of the line if more is pending.
		if ok {
			return h, c, true
		}
	}
	return Header{}, nil, false
}

// reset forgets all connections (device reset): streams are closed and
// the guest is not told.
func (m *mux) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resetLocked()
}

func (m *mux) resetLocked() {
	for _, c := range m.conns {
		m.terminate(c, false)
	}
	m.ready, m.readyAt = nil, 0
	m.resets = nil
}

// close resets the mux for good and waits for its goroutines.
func (m *mux) close() {
	m.mu.Lock()
	m.closed = true
	m.resetLocked()
	if m.idle != nil {
		m.idle.Stop()
	}
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// numConns returns the number of connections (Device.Idle, tests, fuzzing).
func (m *mux) numConns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// malformed handles a packet whose payload could not be read: the
// connection it names (if any) loses data, so it is reset.
func (m *mux) malformed(h Header) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.SrcCID != m.guestCID {
		return
	}
	if c := m.conns[connKey{hostCID: h.DstCID, hostPort: h.DstPort, guestPort: h.SrcPort}]; c != nil {
		m.terminate(c, true)
		return
	}
	if h.Op != VIRTIO_VSOCK_OP_RST {
		m.queueReset(h)
	}
}

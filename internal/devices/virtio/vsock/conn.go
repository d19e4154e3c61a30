package vsock

// Connection state machine and credit-based flow control (VirtIO 1.1
// §5.10.6.3 and §5.10.6.6; Linux net/vmw_vsock/virtio_transport_common.c).
//
// Protocol primer. A stream connection is identified by the 4-tuple of
// (cid, port) pairs. One side sends REQUEST; the other answers RESPONSE to
// accept or RST to refuse. Data flows in RW packets. Every packet carries
// the sender's buf_alloc (its receive buffer for this connection) and
// fwd_cnt (bytes it has consumed from that buffer so far), so the peer
// knows it may have at most buf_alloc - (tx_cnt - fwd_cnt) bytes in flight.
// CREDIT_UPDATE announces freed space without data; CREDIT_REQUEST asks
// for one. SHUTDOWN with flag RCV and/or SEND ends one or both directions;
// after a full shutdown the side that received it answers RST, which ends
// the connection for good.
//
// Here the device is one side (the host peer, at CID 2 or 3) and the guest
// driver is the other. Each established connection has a Stream on the
// host and two goroutines: the reader moves host bytes into out (never
// more than the guest's credit allows, nor more than OutBufBytes), and
// the writer moves guest bytes from in to the stream. The device's worker
// drains out into the guest's rx queue; while the reader waits for room,
// the worker also reads the stream itself (readDirect). A slow host peer
// stalls its writer; in then fills to ConnBufBytes and the guest runs out
// of credit, so nothing is buffered beyond that. A guest that does not
// read stops granting credit, which stalls only that connection's reader.

import (
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// connKey identifies a connection. The guest side is always the guest CID.
type connKey struct {
	hostCID   uint64 // ParentCID or VMADDR_CID_HOST.
	hostPort  uint32
	guestPort uint32
}

// connState is the state of a connection.
type connState int

const (
	// stateHostConnecting: the host opened it; REQUEST pending or sent.
	stateHostConnecting connState = iota
	// stateGuestConnecting: the guest sent REQUEST; Backend.ConnectHost runs.
	stateGuestConnecting
	// stateEstablished: data may flow.
	stateEstablished
	// stateClosing: full SHUTDOWN sent; waiting for the guest's RST.
	stateClosing
)

// Host stream I/O sizes: reads start small (an idle connection holds
// little) and grow to a full packet on a busy stream; writes to the stream
// are cut at one packet so that credit returns to the guest as they go.
const (
	readStartBytes  = 4 << 10
	readChunkBytes  = MaxPacketPayloadBytes
	writeChunkBytes = MaxPacketPayloadBytes
)

// conn is one connection. All fields are guarded by the mux lock.
type conn struct {
	key   connKey
	state connState
	// readerCond and writerCond are on the mux lock. Each wakes one
	// goroutine, and only for what it waits for: the reader for room
	// toward the guest, the writer for guest bytes to write. One shared
	// condition woke the idle writer for every packet sent to the guest
	// and the reader for every packet received.
	readerCond  *sync.Cond
	writerCond  *sync.Cond
	readerWakes uint32 // times the reader returned from readerCond.Wait.
	writerWakes uint32 // times the writer returned from writerCond.Wait.
	dead        bool   // removed from the table; goroutines exit.

	stream     Stream
	ownsStream bool       // close stream when the connection ends.
	connected  chan error // host-initiated only: outcome of the request.
	timer      *time.Timer

	// Control packets waiting to be sent, in this order.
	sendRequest, sendResponse, sendCreditUpdate bool
	sendShutdown                                uint32 // flags, sent once out is empty.
	shutdownSent                                uint32
	queued                                      bool // in the mux's ready list.

	// Guest to host.
	in          byteQueue
	rxCnt       uint32 // bytes received from the guest.
	fwdCnt      uint32 // bytes written to the stream.
	lastFwdSent uint32 // fwdCnt last told to the guest.
	peerShut    uint32 // shutdown flags the guest sent.
	writerDone  bool   // the guest's sending side is closed and in is flushed.
	writing     bool   // the writer holds bytes taken from in, not yet written.

	// Direct writes of guest payloads to the stream (see writeDirect);
	// raw is nil when the stream has no file descriptor.
	raw      syscall.RawConn
	rawWrite func(fd uintptr) bool // writes iov, sets rawN and rawErr.
	iov      [][]byte              // the payload in guest memory.
	rawN     int
	rawErr   error

	// Host to guest.
	out          byteQueue
	txCnt        uint32 // bytes sent to the guest.
	peerBufAlloc uint32
	peerFwdCnt   uint32
	readerEOF    bool // the stream returned EOF.

	// Direct reads of the stream by the device worker (see readDirect),
	// while the reader waits for room; rawRead reads into rbuf and sets
	// rawRN and rawRErr.
	readerWaiting bool
	rawRead       func(fd uintptr) bool
	rbuf          []byte
	rawRN         int
	rawRErr       error
	directReads   uint32 // reads with data the worker made for the reader.
}

// room returns how many more bytes the reader may queue toward the guest:
// the guest's credit minus what is queued, capped at OutBufBytes.
//
// Preconditions: the mux lock is held.
func (c *conn) room() int {
	inFlight := int64(c.txCnt - c.peerFwdCnt) // wraps like the counters do.
	credit := int64(c.peerBufAlloc) - inFlight - int64(c.out.Len())
	if lim := int64(OutBufBytes - c.out.Len()); credit > lim {
		credit = lim
	}
	if credit < 0 {
		return 0
	}
	return int(credit)
}

// pending reports whether the connection has a packet to send.
//
// Preconditions: the mux lock is held.
func (c *conn) pending() bool {
	return c.sendRequest || c.sendResponse || c.out.Len() > 0 || c.sendCreditUpdate || c.sendShutdown != 0
}

// header returns a packet header from the host side of c to the guest.
func (c *conn) header(guestCID uint64, op uint16) Header {
	return Header{
		SrcCID:   c.key.hostCID,
		DstCID:   guestCID,
		SrcPort:  c.key.hostPort,
		DstPort:  c.key.guestPort,
		Type:     VIRTIO_VSOCK_TYPE_STREAM,
		Op:       op,
		BufAlloc: ConnBufBytes,
		FwdCnt:   c.fwdCnt,
	}
}

// nextConnPacket builds c's next packet to the guest, with at most
// maxPayload data bytes; the caller then moves h.Len bytes from c.out
// into the guest's buffer, under the same hold of the lock. It returns
// false if there is nothing to send.
//
// Preconditions: the mux lock is held.
func (m *mux) nextConnPacket(c *conn, maxPayload int) (Header, bool) {
	var h Header
	switch {
	case c.sendRequest:
		c.sendRequest = false
		h = c.header(m.guestCID, VIRTIO_VSOCK_OP_REQUEST)
		m.armTimer(c, ConnRequestTimeout, func() { m.requestTimedOut(c) })
	case c.sendResponse:
		c.sendResponse = false
		h = c.header(m.guestCID, VIRTIO_VSOCK_OP_RESPONSE)
	case c.out.Len() > 0 && maxPayload > 0:
		n := min(c.out.Len(), maxPayload)
		c.txCnt += uint32(n)
		h = c.header(m.guestCID, VIRTIO_VSOCK_OP_RW)
		h.Len = uint32(n)
	case c.sendCreditUpdate:
		h = c.header(m.guestCID, VIRTIO_VSOCK_OP_CREDIT_UPDATE)
	case c.sendShutdown != 0 && c.out.Len() == 0:
		h = c.header(m.guestCID, VIRTIO_VSOCK_OP_SHUTDOWN)
		h.Flags = c.sendShutdown
		c.shutdownSent |= c.sendShutdown
		c.sendShutdown = 0
		if c.shutdownSent == shutdownBoth && c.state == stateEstablished {
			c.state = stateClosing
			m.armTimer(c, ConnShutdownTimeout, func() { m.terminate(c, true) })
		}
	default:
		return Header{}, false
	}
	// Every packet carries our credit.
	c.sendCreditUpdate = false
	c.lastFwdSent = c.fwdCnt
	return h, true
}

// armTimer runs f under the mux lock after d unless c ends first.
//
// Preconditions: the mux lock is held.
func (m *mux) armTimer(c *conn, d time.Duration, f func()) {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(d, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !c.dead {
			f()
		}
	})
}

// startPumps starts the reader and writer goroutines of an established
// connection.
//
// Preconditions: the mux lock is held; c.stream is set.
func (m *mux) startPumps(c *conn) {
	if sc, ok := c.stream.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.rawWrite = func(fd uintptr) bool {
				if len(c.iov) == 1 {
					c.rawN, c.rawErr = unix.Write(int(fd), c.iov[0])
				} else {
					c.rawN, c.rawErr = unix.Writev(int(fd), c.iov)
				}
				return true // never wait: what the socket does not take is queued.
			}
			c.rawRead = func(fd uintptr) bool {
				c.rawRN, c.rawRErr = unix.Read(int(fd), c.rbuf)
				return true // never wait: the reader waits in the poller.
			}
		}
	}
	m.wg.Add(2)
	go m.readLoop(c)
	go m.writeLoop(c)
}

// readLoop moves bytes from the host stream toward the guest, within the
// guest's credit. It reads straight into the tail of c.out (a reservation),
// so the bytes are copied once more only, into the guest's rx buffers.
func (m *mux) readLoop(c *conn) {
	defer m.wg.Done()
	size := readStartBytes
	for {
		m.mu.Lock()
		n := 0
		for {
			if c.dead || c.readerEOF || c.peerShut&VIRTIO_VSOCK_SHUTDOWN_RCV != 0 {
				m.mu.Unlock()
				return
			}
			if n = c.room(); n > 0 {
				break
			}
			c.readerWaiting = true
			c.readerCond.Wait()
			c.readerWaiting = false
			c.readerWakes++
		}
		buf := c.out.reserve(min(n, size))
		m.mu.Unlock()

		k, err := c.stream.Read(buf)

		m.mu.Lock()
		if c.dead {
			m.mu.Unlock()
			return
		}
		if k == len(buf) && size < readChunkBytes {
			size = readChunkBytes // a busy stream: read more at once.
		}
		if m.readDone(c, k, err) {
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// readDone commits the k bytes a read of c's stream put in the
// reservation at the tail of c.out and handles the read's error: at EOF
// the guest is told SHUTDOWN(SEND), on any other error the connection is
// reset. It reports whether reading has ended.
//
// Preconditions: the mux lock is held; c is not dead.
func (m *mux) readDone(c *conn, k int, err error) bool {
	c.out.commit(k) // a no-op if the guest shut down receiving meanwhile.
	if k > 0 {
		m.markReady(c)
	}
	switch {
	case err == nil:
		return false
	case errors.Is(err, io.EOF):
		c.readerEOF = true
		c.sendShutdown |= VIRTIO_VSOCK_SHUTDOWN_SEND
		c.readerCond.Broadcast() // a waiting reader ends.
		m.markReady(c)
		m.checkDone(c)
	default:
		m.logger.Debug("vsock: host stream read", "conn", c.key, "err", err)
		m.terminate(c, true)
	}
	return true
}

// roomGrew is called when c's room toward the guest may have grown: the
// guest's credit (every packet it sends carries it) or bytes leaving
// c.out for an rx buffer. If the reader waits for room and c.out is
// empty, the worker first reads the stream itself (readDirect); the
// reader is woken only if room is left, to wait in the poller for more.
// Waking the reader instead cost two goroutine hand-offs per read on a
// busy stream (the reader's wake-up, then its wake-up of the worker).
//
// Preconditions: the mux lock is held; c is not dead.
func (m *mux) roomGrew(c *conn) {
	if c.readerWaiting && c.raw != nil && c.out.Len() == 0 {
		m.readDirect(c)
	}
	if !c.dead && c.room() > 0 {
		c.readerCond.Broadcast()
	}
}

// readDirect reads c's stream on the caller's goroutine with non-blocking
// read(2)s into the tail of c.out, until the room is used up, the stream
// has no more bytes at the moment, or it ends (handled as the reader
// would, by readDone).
//
// Preconditions: the mux lock is held; c.raw is set; the reader waits for
// room, so it holds no reservation and is not reading.
func (m *mux) readDirect(c *conn) {
	for !c.dead && !c.readerEOF && c.peerShut&VIRTIO_VSOCK_SHUTDOWN_RCV == 0 {
		n := min(c.room(), readChunkBytes)
		if n == 0 {
			return
		}
		c.rbuf = c.out.reserve(n)
		c.rawRN, c.rawRErr = 0, nil
		err := c.raw.Read(c.rawRead)
		c.rbuf = nil
		k := max(c.rawRN, 0)
		if err == nil {
			err = c.rawRErr
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			c.out.commit(0)
			return // nothing now: the reader waits for it.
		}
		if err == nil && k == 0 {
			err = io.EOF
		}
		if k > 0 {
			c.directReads++
		}
		if m.readDone(c, k, err) || k < n {
			return // ended, or the stream is likely drained.
		}
	}
}

// closeWriter is a Stream that can close its sending side alone.
type closeWriter interface{ CloseWrite() error }

// writeLoop moves bytes the guest sent to the host stream and returns
// credit to the guest as the stream accepts them. It takes everything
// queued at once (swapping in a spare buffer), so the bytes go from the
// queue to the stream without another copy, in writes of at most
// writeChunkBytes so that credit flows back while a large batch drains.
func (m *mux) writeLoop(c *conn) {
	defer m.wg.Done()
	var spare []byte
	for {
		m.mu.Lock()
		c.writing = false
		for !c.dead && c.in.Len() == 0 && c.peerShut&VIRTIO_VSOCK_SHUTDOWN_SEND == 0 {
			c.writerCond.Wait()
			c.writerWakes++
		}
		if c.dead {
			m.mu.Unlock()
			return
		}
		if c.in.Len() == 0 { // the guest will send no more.
			m.mu.Unlock()
			if cw, ok := c.stream.(closeWriter); ok {
				_ = cw.CloseWrite()
			}
			m.mu.Lock()
			c.writerDone = true
			if !c.dead {
				m.checkDone(c)
			}
			m.mu.Unlock()
			return
		}
		batch := c.in.swap(spare)
		c.writing = true
		m.mu.Unlock()

		for data := batch; len(data) > 0; {
			n := min(len(data), writeChunkBytes)
			_, err := c.stream.Write(data[:n])
			data = data[n:]

			m.mu.Lock()
			if c.dead {
				m.mu.Unlock()
				return
			}
			if err != nil {
				m.logger.Debug("vsock: host stream write", "conn", c.key, "err", err)
				m.terminate(c, true)
				m.mu.Unlock()
				return
			}
			c.fwdCnt += uint32(n)
			m.maybeCreditUpdate(c)
			m.mu.Unlock()
		}
		spare = batch[:0]
	}
}

// lentPayload is a payloadSource that can lend its next bytes in place
// (a virtqueue chain: slices of guest memory) and then consume them.
type lentPayload interface {
	payloadSource
	PeekReadable(dst [][]byte, n int) [][]byte
	Discard(n int) int
}

// writeDirect writes up to n payload bytes of src to c's stream straight
// from guest memory, with one non-blocking write(2) or writev(2), and
// consumes from src what the stream took. It is used only while the
// writer is idle (nothing queued or being written), so the bytes keep
// their order; what the stream does not take at once is queued as usual.
// This saves the copy into the queue and the wake-up of the writer on
// the steady path of a reader that keeps up.
//
// Preconditions: the mux lock is held; c.raw is set; c.in is empty and
// c.writing is false.
func (c *conn) writeDirect(src lentPayload, n int) (int, error) {
	c.iov = src.PeekReadable(c.iov[:0], n)
	if len(c.iov) == 0 {
		return 0, nil
	}
	c.rawN, c.rawErr = 0, nil
	err := c.raw.Write(c.rawWrite)
	clear(c.iov) // hold no reference to guest memory.
	if err != nil {
		return 0, err
	}
	k, err := c.rawN, c.rawErr
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		k, err = 0, nil
	}
	if err != nil || k <= 0 {
		return 0, err
	}
	return src.Discard(k), nil
}

// maybeCreditUpdate queues a CREDIT_UPDATE when the guest's idea of our
// free buffer space has dropped below one full packet (or half its
// window, for a smaller window) while we have freed more: the rule Linux
// applies to its own receive side (net/vmw_vsock/virtio_transport_common.c,
// virtio_transport_stream_do_dequeue). Updates thus come only when the
// guest would otherwise soon block, and every packet we send carries
// fwd_cnt anyway.
//
// The guest's window is ConnBufBytes or, if smaller, the guest's own
// buf_alloc: Linux since 6.12.y keeps no more than its own buffer size in
// flight (virtio_transport_tx_buf_size), so a guest socket with a buffer
// of 192 KiB or less (SO_VM_SOCKETS_BUFFER_SIZE) never came near the
// threshold of our 256 KiB and waited for an update forever.
//
// Preconditions: the mux lock is held.
func (m *mux) maybeCreditUpdate(c *conn) {
	if c.fwdCnt == c.lastFwdSent {
		return
	}
	window := min(int64(ConnBufBytes), int64(c.peerBufAlloc))
	threshold := min(int64(MaxPacketPayloadBytes), (window+1)/2)
	if believedFree := window - int64(c.rxCnt-c.lastFwdSent); believedFree < threshold {
		c.sendCreditUpdate = true
		m.markReady(c)
	}
}

// checkDone ends the connection once both directions are finished.
//
// Preconditions: the mux lock is held; c is not dead.
func (m *mux) checkDone(c *conn) {
	switch {
	case c.peerShut == shutdownBoth && c.writerDone:
		// The guest closed and everything it sent was delivered: answer
		// its full shutdown with the RST it waits for.
		m.terminate(c, true)
	case c.readerEOF && c.writerDone && c.state == stateEstablished:
		// Both directions ended on our side: full shutdown; the guest
		// answers RST (or ConnShutdownTimeout passes).
		c.sendShutdown = shutdownBoth &^ c.shutdownSent
		if c.sendShutdown != 0 {
			m.markReady(c)
		}
	}
}

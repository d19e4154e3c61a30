package vsock

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

func TestUnservedPortGetsReset(t *testing.T) {
	g := newTestGuest(t, newTestBackend())
	start := time.Now()
	g.send(Header{DstCID: ParentCID, SrcPort: 1234, DstPort: 5555, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: 4096}, nil)
	p := g.expectOp(VIRTIO_VSOCK_OP_RST)
	if got, want := p.h, (Header{SrcCID: ParentCID, DstCID: testGuestCID, SrcPort: 5555, DstPort: 1234, Type: VIRTIO_VSOCK_TYPE_STREAM, Op: VIRTIO_VSOCK_OP_RST}); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refusal took %v, want immediate", d)
	}
	if n := g.m.numConns(); n != 0 {
		t.Errorf("got %d connections, want 0", n)
	}
}

// TestBadPackets covers every way a guest packet is rejected.
func TestBadPackets(t *testing.T) {
	req := Header{DstCID: ParentCID, SrcPort: 1000, DstPort: 7, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: 4096}
	with := func(f func(*Header)) Header { h := req; f(&h); return h }
	tests := []struct {
		name     string
		connect  bool // establish the connection to port 7 first.
		h        Header
		payload  []byte
		wantRST  bool
		wantConn int
	}{
		{"spoofed source CID dropped", false, with(func(h *Header) { h.SrcCID = 99 }), nil, false, 0},
		{"unknown destination CID", false, with(func(h *Header) { h.DstCID = 42 }), nil, true, 0},
		{"datagram type", false, with(func(h *Header) { h.Type = 2 }), nil, true, 0},
		{"data without connection", false, with(func(h *Header) { h.Op = VIRTIO_VSOCK_OP_RW }), []byte("x"), true, 0},
		{"reset without connection ignored", false, with(func(h *Header) { h.Op = VIRTIO_VSOCK_OP_RST }), nil, false, 0},
		{"unknown op without connection", false, with(func(h *Header) { h.Op = 99 }), nil, true, 0},
		{"unknown op on connection", true, with(func(h *Header) { h.Op = 99 }), nil, true, 0},
		{"duplicate request", true, req, nil, true, 0},
		{"response from guest to guest connection", true, with(func(h *Header) { h.Op = VIRTIO_VSOCK_OP_RESPONSE }), nil, true, 0},
		{"credit exceeded", true, with(func(h *Header) { h.Op = VIRTIO_VSOCK_OP_RW }), make([]byte, ConnBufBytes+1), true, 0},
		{"credit update keeps connection", true, with(func(h *Header) { h.Op = VIRTIO_VSOCK_OP_CREDIT_UPDATE }), nil, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTestBackend()
			b.handle(7, func(c net.Conn) { time.Sleep(time.Second); c.Close() })
			g := newTestGuest(t, b)
			if tt.connect {
				g.dial(7, 1000)
			}
			if tt.h.SrcCID == 0 {
				tt.h.SrcCID = testGuestCID
			}
			if tt.h.Type == 0 {
				tt.h.Type = VIRTIO_VSOCK_TYPE_STREAM
			}
			tt.h.Len = uint32(len(tt.payload))
			g.m.handlePacket(tt.h, tt.payload)
			if tt.wantRST {
				g.expectOp(VIRTIO_VSOCK_OP_RST)
			} else {
				g.expectNone(20 * time.Millisecond)
			}
			if got := g.m.numConns(); got != tt.wantConn {
				t.Errorf("got %d connections, want %d", got, tt.wantConn)
			}
		})
	}
}

func TestGuestConnectEcho(t *testing.T) {
	b := newTestBackend()
	b.handle(8000, echo)
	g := newTestGuest(t, b)
	c := g.dial(8000, 4000)
	msg := make([]byte, 3*ConnBufBytes+123) // more than one credit window.
	rand.Read(msg)
	// Interleave writing and reading on the single test goroutine: write
	// a window, read it back.
	var got []byte
	for off := 0; off < len(msg); off += 32 << 10 {
		end := min(off+32<<10, len(msg))
		c.write(msg[off:end])
		got = append(got, c.readN(end-off)...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo mismatch: got %d bytes, want %d", len(got), len(msg))
	}
	// Guest closes: SHUTDOWN both -> device flushes and answers RST.
	g.send(c.hdr(VIRTIO_VSOCK_OP_SHUTDOWN), nil)
	sh := c.hdr(VIRTIO_VSOCK_OP_SHUTDOWN)
	sh.Flags = shutdownBoth
	g.send(sh, nil)
	for {
		p := g.recv()
		if p.h.Op == VIRTIO_VSOCK_OP_RST {
			break
		}
		c.handle(p)
	}
	if n := g.m.numConns(); n != 0 {
		t.Errorf("got %d connections after close, want 0", n)
	}
}

// TestFlowControlTowardGuest checks the device never exceeds the guest's
// credit and resumes on a credit update.
func TestFlowControlTowardGuest(t *testing.T) {
	const window = 10000
	g, c := fillGuestWindow(t, window, 0)
	if len(c.rx) != window {
		t.Fatalf("got %d bytes, want exactly the %d-byte window", len(c.rx), window)
	}
	// Consume and announce: the device continues.
	total := 0
	for !c.eof {
		total += len(c.rx)
		c.fwdCnt += uint32(len(c.rx))
		c.rx = nil
		g.send(c.hdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE), nil)
		c.handle(g.recv())
		if int(c.txCnt) > 0 {
			t.Fatal("guest sent data")
		}
	}
	total += len(c.rx)
	if total != 5*window {
		t.Errorf("got %d bytes, want %d", total, 5*window)
	}
}

// fillGuestWindow connects a guest port 77 with a window-byte receive
// buffer to a host service on port 9 that writes 5 windows, then closes
// after hold, and returns once the guest holds exactly one window and the
// device has gone quiet.
func fillGuestWindow(t *testing.T, window int, hold time.Duration) (*testGuest, *gconn) {
	t.Helper()
	b := newTestBackend()
	b.handle(9, func(c net.Conn) {
		c.Write(make([]byte, 5*window))
		<-time.After(hold)
		c.Close()
	})
	g := newTestGuest(t, b)
	c := g.dialBuf(9, 77, uint32(window))
	for len(c.rx) < window {
		c.handle(g.recv())
	}
	g.expectNone(50 * time.Millisecond)
	return g, c
}

// TestSlowHostBoundsBuffering checks a host peer that never reads makes
// the guest run out of credit instead of the device buffering.
func TestSlowHostBoundsBuffering(t *testing.T) {
	b := newTestBackend()
	stall := make(chan struct{})
	b.handle(10, func(c net.Conn) { <-stall; c.Close() })
	defer close(stall)
	g := newTestGuest(t, b)
	c := g.dial(10, 78)
	data := make([]byte, MaxPacketPayloadBytes)
	sent := 0
	for i := 0; i < 100; i++ {
		free := int(c.peerBuf - (c.txCnt - c.peerFwdCnt))
		if free == 0 {
			break
		}
		n := min(free, len(data))
		g.send(c.hdr(VIRTIO_VSOCK_OP_RW), data[:n])
		c.txCnt += uint32(n)
		sent += n
	}
	// The kernel socket buffers absorb some; then credit stops the guest.
	time.Sleep(100 * time.Millisecond)
	g.poll()
	for _, p := range g.queue {
		c.track(p.h)
	}
	g.queue = nil
	if free := c.peerBuf - (c.txCnt - c.peerFwdCnt); free > ConnBufBytes {
		t.Fatalf("got %d bytes of credit, want at most %d", free, ConnBufBytes)
	}
	g.m.mu.Lock()
	buffered := g.m.conns[connKey{ParentCID, 10, 78}].in.Len()
	g.m.mu.Unlock()
	if buffered > ConnBufBytes {
		t.Errorf("got %d bytes buffered, want <= %d", buffered, ConnBufBytes)
	}
}

func TestCreditRequest(t *testing.T) {
	b := newTestBackend()
	b.handle(11, echo)
	g := newTestGuest(t, b)
	c := g.dial(11, 79)
	g.send(c.hdr(VIRTIO_VSOCK_OP_CREDIT_REQUEST), nil)
	p := g.expectOp(VIRTIO_VSOCK_OP_CREDIT_UPDATE)
	if p.h.BufAlloc != ConnBufBytes {
		t.Errorf("got buf_alloc %d, want %d", p.h.BufAlloc, ConnBufBytes)
	}
}

func TestHostEOFSendsShutdown(t *testing.T) {
	b := newTestBackend()
	b.handle(12, func(c net.Conn) { c.Write([]byte("bye")); c.Close() })
	g := newTestGuest(t, b)
	c := g.dial(12, 80)
	if got := string(c.readN(3)); got != "bye" {
		t.Errorf("got %q, want %q", got, "bye")
	}
	for !c.eof {
		c.handle(g.recv())
	}
	// The guest closes too: the device answers its full shutdown with RST.
	sh := c.hdr(VIRTIO_VSOCK_OP_SHUTDOWN)
	sh.Flags = shutdownBoth
	g.send(sh, nil)
	g.expectOp(VIRTIO_VSOCK_OP_RST)
}

func TestGuestHalfClose(t *testing.T) {
	b := newTestBackend()
	got := make(chan []byte, 1)
	b.handle(13, func(c net.Conn) {
		all, _ := io.ReadAll(c) // ends when the guest shuts down SEND.
		got <- all
		c.Write([]byte("done"))
		c.Close()
	})
	g := newTestGuest(t, b)
	c := g.dial(13, 81)
	c.write([]byte("hello"))
	sh := c.hdr(VIRTIO_VSOCK_OP_SHUTDOWN)
	sh.Flags = VIRTIO_VSOCK_SHUTDOWN_SEND
	g.send(sh, nil)
	select {
	case b := <-got:
		if string(b) != "hello" {
			t.Errorf("got %q, want %q", b, "hello")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("host never saw EOF")
	}
	if s := string(c.readN(4)); s != "done" {
		t.Errorf("got %q, want %q", s, "done")
	}
	// Both directions are now over on the host side: full shutdown.
	for {
		p := g.recv()
		if p.h.Op == VIRTIO_VSOCK_OP_SHUTDOWN && p.h.Flags&VIRTIO_VSOCK_SHUTDOWN_RCV != 0 {
			break
		}
		c.handle(p)
	}
	// A guest that never answers is forgotten after ConnShutdownTimeout.
	g.expectOp(VIRTIO_VSOCK_OP_RST)
	if n := g.m.numConns(); n != 0 {
		t.Errorf("got %d connections, want 0", n)
	}
}

func TestConnectionLimit(t *testing.T) {
	b := newTestBackend()
	b.handle(14, func(c net.Conn) { time.Sleep(5 * time.Second); c.Close() })
	g := newTestGuest(t, b)
	for i := 0; i < MaxConns; i++ {
		g.send(Header{DstCID: ParentCID, SrcPort: uint32(2000 + i), DstPort: 14, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: 4096}, nil)
	}
	g.send(Header{DstCID: ParentCID, SrcPort: 1, DstPort: 14, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: 4096}, nil)
	for {
		p := g.recv()
		if p.h.Op == VIRTIO_VSOCK_OP_RST {
			if p.h.DstPort != 1 {
				t.Errorf("got reset for port %d, want 1", p.h.DstPort)
			}
			break
		}
	}
	if n := g.m.numConns(); n != MaxConns {
		t.Errorf("got %d connections, want %d", n, MaxConns)
	}
}

func TestConnectGuest(t *testing.T) {
	tests := []struct {
		name  string
		reply uint16 // guest's answer; 0 = none.
		want  error
	}{
		{"accepted", VIRTIO_VSOCK_OP_RESPONSE, nil},
		{"refused", VIRTIO_VSOCK_OP_RST, ErrConnRefused},
		{"timeout", 0, ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newTestGuest(t, newTestBackend())
			host, peer := tcpPipe()
			defer peer.Close()
			var gotPort uint32
			errc := make(chan error, 1)
			go func() {
				errc <- g.m.connectGuest(context.Background(), 5005, host, func(p uint32) error {
					gotPort = p
					_, err := host.Write([]byte("OK\n"))
					return err
				})
			}()
			req := g.expectOp(VIRTIO_VSOCK_OP_REQUEST)
			if req.h.DstPort != 5005 || req.h.SrcCID != ParentCID {
				t.Fatalf("got %v, want request from CID 3 to port 5005", req.h)
			}
			c := &gconn{g: g, hostCID: ParentCID, hostPort: req.h.SrcPort, port: 5005, bufAlloc: 1 << 20}
			c.track(req.h)
			if tt.reply != 0 {
				g.send(c.hdr(tt.reply), nil)
			}
			err := <-errc
			if !errorsIs(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil {
				host.Close()
				return
			}
			if gotPort != req.h.SrcPort {
				t.Errorf("got onConnect port %d, want %d", gotPort, req.h.SrcPort)
			}
			c.write([]byte("ping"))
			buf := make([]byte, 7)
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "OK\nping" {
				t.Errorf("got %q, %v, want %q", buf, err, "OK\nping")
			}
			peer.Write([]byte("pong"))
			if s := string(c.readN(4)); s != "pong" {
				t.Errorf("got %q, want pong", s)
			}
		})
	}
}

func TestCloseCancelsPending(t *testing.T) {
	g := newTestGuest(t, newTestBackend())
	host, peer := tcpPipe()
	defer peer.Close()
	defer host.Close()
	errc := make(chan error, 1)
	go func() { errc <- g.m.connectGuest(context.Background(), 1, host, nil) }()
	g.expectOp(VIRTIO_VSOCK_OP_REQUEST)
	g.m.close()
	if err := <-errc; err == nil {
		t.Fatalf("got nil, want an error")
	}
	if err := g.m.connectGuest(context.Background(), 1, host, nil); !errorsIs(err, ErrClosed) {
		t.Errorf("got %v, want %v", err, ErrClosed)
	}
}

// TestConnRequestTimeoutStartsAtDelivery queues a host connection request
// while the guest gives no rx buffers for longer than ConnRequestTimeout,
// as a busy guest does under a burst of requests: the request must still
// be accepted once the guest sees it and answers at once, because the
// timeout counts from when the request is in the guest's rx queue.
func TestConnRequestTimeoutStartsAtDelivery(t *testing.T) {
	g := newTestGuest(t, newTestBackend())
	host, peer := tcpPipe()
	defer peer.Close()
	defer host.Close()
	errc := make(chan error, 1)
	go func() { errc <- g.m.connectGuest(context.Background(), 5005, host, nil) }()
	time.Sleep(ConnRequestTimeout + 500*time.Millisecond) // no g.poll: no rx buffers.
	select {
	case err := <-errc:
		t.Fatalf("connectGuest returned %v before the guest saw the request", err)
	default:
	}
	req := g.expectOp(VIRTIO_VSOCK_OP_REQUEST)
	c := &gconn{g: g, hostCID: ParentCID, hostPort: req.h.SrcPort, port: 5005, bufAlloc: 1 << 20}
	c.track(req.h)
	g.send(c.hdr(VIRTIO_VSOCK_OP_RESPONSE), nil)
	if err := <-errc; err != nil {
		t.Fatalf("got %v, want the connection accepted", err)
	}
}

// blockingBackend never answers until its context ends.
type blockingBackend struct{}

func (blockingBackend) ConnectHost(ctx context.Context, cid uint64, port, srcPort uint32) (Stream, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestHostConnectTimeout(t *testing.T) {
	g := newTestGuest(t, blockingBackend{})
	start := time.Now()
	g.send(Header{DstCID: ParentCID, SrcPort: 1, DstPort: 2, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: 4096}, nil)
	g.expectOp(VIRTIO_VSOCK_OP_RST)
	if d := time.Since(start); d < HostConnectTimeout-100*time.Millisecond {
		t.Errorf("got reset after %v, want after about %v", d, HostConnectTimeout)
	}
}

// TestTinyRxBufferDoesNotSpin gives the device rx buffers with room for a
// header only while a connection has data queued: fillRx must return (the
// data waits for a bigger buffer) instead of retrying the connection
// forever under the lock.
func TestTinyRxBufferDoesNotSpin(t *testing.T) {
	g := newTestGuest(t, newTestBackend())
	g.m.mu.Lock()
	c := g.m.newConn(connKey{hostCID: ParentCID, hostPort: 1, guestPort: 2}, stateEstablished)
	c.peerBufAlloc = ConnBufBytes
	c.out.reserve(10)
	c.out.commit(10)
	g.m.markReady(c)
	g.m.mu.Unlock()
	done := make(chan int, 1)
	go func() {
		done <- g.m.fillRx(func() (rxBuffer, error) { return &fakeRxBuf{size: HeaderSize}, nil }, func(rxBuffer) {})
	}()
	select {
	case n := <-done:
		if n != 1 {
			t.Errorf("got %d buffers used, want 1 (returned empty)", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fillRx spins on a connection whose data does not fit the rx buffer")
	}
	g.rxSize = 4096
	if p := g.recv(); p.h.Op != VIRTIO_VSOCK_OP_RW || len(p.p) != 10 {
		t.Errorf("got %v with %d bytes, want RW with 10", p.h, len(p.p))
	}
}

// TestCreditUpdateForSmallGuestBuffer streams toward the host from guest
// sockets whose own buffer (buf_alloc) is smaller than the device's. Linux
// 6.12.y keeps at most that much in flight, so a device that waited for
// its own buffer to run low before sending a CREDIT_UPDATE stalled the
// stream for good once the guest's buffer was 192 KiB or less.
func TestCreditUpdateForSmallGuestBuffer(t *testing.T) {
	for _, bufAlloc := range []uint32{128, 4096, 64 << 10, 100 << 10, 192 << 10, 200 << 10, ConnBufBytes, 1 << 20} {
		t.Run(fmt.Sprint(bufAlloc), func(t *testing.T) {
			b := newTestBackend()
			got := make(chan int, 1)
			b.handle(8001, func(c net.Conn) {
				n, _ := io.Copy(io.Discard, c)
				got <- int(n)
			})
			g := newTestGuest(t, b)
			c := g.dialBuf(8001, 4001, bufAlloc)
			const total = 1 << 20
			c.write(make([]byte, total))
			sh := c.hdr(VIRTIO_VSOCK_OP_SHUTDOWN)
			sh.Flags = shutdownBoth
			g.send(sh, nil)
			for p := g.recv(); p.h.Op != VIRTIO_VSOCK_OP_RST; p = g.recv() {
				c.handle(p)
			}
			if n := <-got; n != total {
				t.Errorf("host read %d bytes, want %d", n, total)
			}
		})
	}
}

// TestReadDirect checks the worker's reads of a host stream while the
// connection's reader waits for the guest's credit: bytes already in the
// stream reach the guest without waking the reader, and the end of the
// stream, an error and an empty stream are handled as the reader would.
func TestReadDirect(t *testing.T) {
	const window = 10000
	pattern := func(off, n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte((off + i) % 251)
		}
		return p
	}
	// recvWindow receives one window into c and reports whether it holds
	// the pattern's bytes from off.
	recvWindow := func(t *testing.T, g *testGuest, c *gconn, off int) bool {
		t.Helper()
		for len(c.rx) < window {
			c.handle(g.recv())
		}
		if !bytes.Equal(c.rx, pattern(off, window)) {
			t.Errorf("window at %d: wrong bytes", off)
			return false
		}
		return true
	}
	for _, tc := range []struct {
		name string
		// host runs on the host after it wrote the guest's first window
		// into the stream; it closes done when the stream is as the case
		// needs it, and may wait for more (closed at the end).
		host func(c net.Conn, done chan<- struct{}, more <-chan struct{})
		// guest runs once the guest holds the first window and the reader
		// waits for credit.
		guest func(t *testing.T, g *testGuest, c *gconn, more chan<- struct{})
	}{{
		name: "bytes waiting",
		host: func(c net.Conn, done chan<- struct{}, more <-chan struct{}) {
			c.Write(pattern(window, 2*window))
			close(done)
			<-more
		},
		guest: func(t *testing.T, g *testGuest, c *gconn, more chan<- struct{}) {
			grant(c)
			recvWindow(t, g, c, window)
			if s := connStats(t, g); s.DirectReads == 0 || s.ReaderWakes != 0 {
				t.Errorf("direct_reads=%d reader_wakes=%d, want > 0 and 0", s.DirectReads, s.ReaderWakes)
			}
		},
	}, {
		name: "end of stream",
		host: func(c net.Conn, done chan<- struct{}, more <-chan struct{}) {
			c.Write(pattern(window, window))
			c.Close()
			close(done)
		},
		guest: func(t *testing.T, g *testGuest, c *gconn, more chan<- struct{}) {
			grant(c)
			recvWindow(t, g, c, window)
			grant(c)
			for !c.eof {
				c.handle(g.recv())
			}
			if len(c.rx) != 0 {
				t.Errorf("%d bytes after the end of the stream", len(c.rx))
			}
		},
	}, {
		name: "connection reset",
		host: func(c net.Conn, done chan<- struct{}, more <-chan struct{}) {
			c.Write(pattern(window, window))
			c.(*net.TCPConn).SetLinger(0) // close sends RST.
			c.Close()
			close(done)
		},
		guest: func(t *testing.T, g *testGuest, c *gconn, more chan<- struct{}) {
			for grant(c); ; grant(c) {
				p := g.recv()
				if p.h.Op == VIRTIO_VSOCK_OP_RST {
					return
				}
				c.handle(p)
			}
		},
	}, {
		name: "nothing yet",
		host: func(c net.Conn, done chan<- struct{}, more <-chan struct{}) {
			close(done)
			<-more
			c.Write(pattern(window, window))
			<-more
		},
		guest: func(t *testing.T, g *testGuest, c *gconn, more chan<- struct{}) {
			grant(c)
			// The worker found nothing: the reader is woken to wait for it.
			waitUntil(t, func() bool { return connStats(t, g).ReaderWakes > 0 }, "the reader was not woken to wait for the stream")
			more <- struct{}{}
			recvWindow(t, g, c, window)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			done, more := make(chan struct{}), make(chan struct{})
			b := newTestBackend()
			b.handle(9, func(c net.Conn) {
				c.Write(pattern(0, window))
				tc.host(c, done, more)
			})
			g := newTestGuest(t, b)
			c := g.dialBuf(9, 77, window)
			if !recvWindow(t, g, c, 0) {
				t.FailNow()
			}
			waitUntil(t, func() bool { return readerWaiting(g) }, "the reader does not wait for room")
			<-done
			tc.guest(t, g, c, more)
			close(more)
		})
	}
}

// grant consumes what c received and tells the device so.
func grant(c *gconn) {
	c.fwdCnt += uint32(len(c.rx))
	c.rx = nil
	c.g.send(c.hdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE), nil)
}

// connStats returns the stats of g's only connection.
func connStats(t *testing.T, g *testGuest) ConnStats {
	t.Helper()
	conns, _, _ := g.m.snapshot()
	if len(conns) != 1 {
		t.Fatalf("got %d connections, want 1", len(conns))
	}
	return conns[0]
}

// readerWaiting reports whether the reader of g's only connection waits
// for room toward the guest.
func readerWaiting(g *testGuest) bool {
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	waiting := false
	for _, c := range g.m.conns {
		waiting = c.readerWaiting
	}
	return waiting
}

// waitUntil polls cond every millisecond and fails the test with failure
// if it is not true within 3 s.
func waitUntil(t *testing.T, cond func() bool, failure string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
	}
}

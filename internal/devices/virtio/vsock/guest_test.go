package vsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// testGuestCID is the simulated guest's CID.
const testGuestCID = 16

// testBackend is an in-memory Backend: ports in serve get one end of a
// net.Pipe handed to the test via accepted; other ports are refused.
type testBackend struct {
	mu       sync.Mutex
	serve    map[uint32]func(net.Conn)
	accepted chan net.Conn
	calls    int
}

func newTestBackend() *testBackend {
	return &testBackend{serve: map[uint32]func(net.Conn){}, accepted: make(chan net.Conn, 16)}
}

func (b *testBackend) handle(port uint32, f func(net.Conn)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.serve[port] = f
}

// ConnectHost implements Backend.ConnectHost.
func (b *testBackend) ConnectHost(ctx context.Context, cid uint64, port, srcPort uint32) (Stream, error) {
	b.mu.Lock()
	b.calls++
	f := b.serve[port]
	b.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("nothing on port %d", port)
	}
	a, z := tcpPipe()
	go f(z)
	return a, nil
}

// tcpPipe returns two ends of a loopback TCP connection (buffered, with
// CloseWrite), unlike net.Pipe.
func tcpPipe() (*net.TCPConn, *net.TCPConn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		panic(err)
	}
	return a.(*net.TCPConn), (<-ch).(*net.TCPConn)
}

func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	c.Close()
}

// packet is a packet the simulated guest received.
type packet struct {
	h Header
	p []byte
}

// fakeRxBuf is a guest rx buffer of a fixed size.
type fakeRxBuf struct {
	size int
	data []byte
}

func (b *fakeRxBuf) WritableLen() uint32 { return uint32(b.size) }
func (b *fakeRxBuf) Write(p []byte) (int, error) {
	if len(b.data)+len(p) > b.size {
		return 0, io.ErrShortWrite
	}
	b.data = append(b.data, p...)
	return len(p), nil
}

// testGuest is a simulated guest driver talking to a mux.
type testGuest struct {
	t      testing.TB
	m      *mux
	wake   chan struct{}
	rxSize int // size of each rx buffer (Linux: 4 KiB).
	queue  []packet
}

func newTestGuest(t testing.TB, b Backend) *testGuest {
	g := &testGuest{t: t, wake: make(chan struct{}, 1), rxSize: 4096}
	g.m = newMux(testGuestCID, b, slog.New(slog.DiscardHandler), func() {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	})
	t.Cleanup(g.m.close)
	return g
}

// send delivers one packet from the guest.
func (g *testGuest) send(h Header, p []byte) {
	if h.SrcCID == 0 {
		h.SrcCID = testGuestCID
	}
	if h.Type == 0 {
		h.Type = VIRTIO_VSOCK_TYPE_STREAM
	}
	h.Len = uint32(len(p))
	g.m.handlePacket(h, p)
}

// poll moves every pending packet into g.queue.
func (g *testGuest) poll() {
	g.m.fillRx(func() (rxBuffer, error) { return &fakeRxBuf{size: g.rxSize}, nil }, func(b rxBuffer) {
		fb := b.(*fakeRxBuf)
		if len(fb.data) == 0 {
			return
		}
		h, err := DecodeHeader(fb.data)
		if err != nil {
			g.t.Errorf("bad packet from device: %v", err)
			return
		}
		if int(h.Len) != len(fb.data)-HeaderSize {
			g.t.Errorf("packet %v carries %d bytes", h, len(fb.data)-HeaderSize)
		}
		g.queue = append(g.queue, packet{h, fb.data[HeaderSize:]})
	})
}

// recv returns the next packet from the device, waiting up to 3 s.
func (g *testGuest) recv() packet {
	g.t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		g.poll()
		if len(g.queue) > 0 {
			p := g.queue[0]
			g.queue = g.queue[1:]
			return p
		}
		select {
		case <-g.wake:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			g.t.Fatalf("no packet from the device")
		}
	}
}

// expectNone checks that the device sends nothing for d.
func (g *testGuest) expectNone(d time.Duration) {
	g.t.Helper()
	time.Sleep(d)
	g.poll()
	if len(g.queue) > 0 {
		g.t.Fatalf("got unexpected packet %v, want none", g.queue[0].h)
	}
}

// expectOp receives a packet and checks its op.
func (g *testGuest) expectOp(op uint16) packet {
	g.t.Helper()
	p := g.recv()
	if p.h.Op != op {
		g.t.Fatalf("got %v, want op %s", p.h, opName(op))
	}
	return p
}

// gconn is the guest side of one connection.
type gconn struct {
	g          *testGuest
	hostCID    uint64
	hostPort   uint32
	port       uint32
	bufAlloc   uint32
	fwdCnt     uint32
	txCnt      uint32
	peerBuf    uint32
	peerFwdCnt uint32
	rx         []byte
	eof        bool
}

func (c *gconn) hdr(op uint16) Header {
	return Header{DstCID: c.hostCID, SrcPort: c.port, DstPort: c.hostPort, Op: op, BufAlloc: c.bufAlloc, FwdCnt: c.fwdCnt}
}

// dial connects the guest to the host and waits for the response.
func (g *testGuest) dial(port, srcPort uint32) *gconn {
	g.t.Helper()
	return g.dialBuf(port, srcPort, 1<<20)
}

// dialBuf is dial from a guest socket whose buffer (buf_alloc) is bufAlloc.
func (g *testGuest) dialBuf(port, srcPort, bufAlloc uint32) *gconn {
	g.t.Helper()
	c := &gconn{g: g, hostCID: ParentCID, hostPort: port, port: srcPort, bufAlloc: bufAlloc}
	g.send(c.hdr(VIRTIO_VSOCK_OP_REQUEST), nil)
	p := g.expectOp(VIRTIO_VSOCK_OP_RESPONSE)
	c.track(p.h)
	return c
}

func (c *gconn) track(h Header) {
	c.peerBuf = h.BufAlloc
	c.peerFwdCnt = h.FwdCnt
}

// write sends p within the device's credit, waiting for credit updates.
func (c *gconn) write(p []byte) {
	c.g.t.Helper()
	for len(p) > 0 {
		// Linux 6.12.y sends at most its own buf_alloc in flight, however
		// much the peer offers (virtio_transport_tx_buf_size).
		free := int(min(c.peerBuf, c.bufAlloc) - (c.txCnt - c.peerFwdCnt))
		if free <= 0 {
			c.handle(c.g.recv())
			continue
		}
		n := min(free, len(p), MaxPacketPayloadBytes)
		c.g.send(c.hdr(VIRTIO_VSOCK_OP_RW), p[:n])
		c.txCnt += uint32(n)
		p = p[n:]
	}
}

// handle applies a packet the device sent on c.
func (c *gconn) handle(p packet) {
	c.g.t.Helper()
	if p.h.DstPort != c.port || p.h.SrcPort != c.hostPort {
		c.g.t.Fatalf("packet %v for another connection", p.h)
	}
	c.track(p.h)
	switch p.h.Op {
	case VIRTIO_VSOCK_OP_RW:
		c.rx = append(c.rx, p.p...)
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if p.h.Flags&VIRTIO_VSOCK_SHUTDOWN_SEND != 0 {
			c.eof = true
		}
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
	default:
		c.g.t.Fatalf("unexpected %v", p.h)
	}
}

// readN receives until n bytes arrived, consuming (and crediting) them.
func (c *gconn) readN(n int) []byte {
	c.g.t.Helper()
	for len(c.rx) < n && !c.eof {
		c.handle(c.g.recv())
	}
	if len(c.rx) < n {
		c.g.t.Fatalf("got %d bytes before EOF, want %d", len(c.rx), n)
	}
	out := c.rx[:n]
	c.rx = c.rx[n:]
	c.fwdCnt += uint32(n)
	c.g.send(c.hdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE), nil)
	return out
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

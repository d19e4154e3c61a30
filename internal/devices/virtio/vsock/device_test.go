package vsock_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock/vsocktest"
)

// tcpBackend connects guest connections to host TCP listeners by port.
type tcpBackend struct {
	mu    sync.Mutex
	addrs map[uint32]string
}

func (b *tcpBackend) ConnectHost(ctx context.Context, cid uint64, port, srcPort uint32) (vsock.Stream, error) {
	b.mu.Lock()
	addr, ok := b.addrs[port]
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("port %d not served", port)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// acceptAll serves every connection l accepts with f on its own
// goroutine, until l is closed.
func acceptAll(l net.Listener, f func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go f(c)
	}
}

// setup returns a device with a simulated guest and a backend serving
// the given ports.
func setup(t testing.TB, serve map[uint32]func(net.Conn)) (*vsock.Device, *vsocktest.Guest) {
	t.Helper()
	b := &tcpBackend{addrs: map[uint32]string{}}
	for port, f := range serve {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		b.addrs[port] = l.Addr().String()
		go acceptAll(l, f)
	}
	dev, err := vsock.New(16, b, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g, err := vsocktest.Start(dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Close()
		dev.Close()
		if v := g.Violations(); len(v) > 0 {
			t.Errorf("device violations: %v", v)
		}
	})
	return dev, g
}

func echo(c net.Conn) {
	io.Copy(c, c)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, c)
	c.Close()
}

// roundTrip writes n random bytes to c while reading the echo, closes the
// sending side and compares hashes.
func roundTrip(t testing.TB, c io.ReadWriteCloser, n int64) {
	t.Helper()
	want := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, want), io.LimitReader(rand.Reader, n))
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	m, err := io.Copy(got, c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if m != n || !bytesEqual(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("got %d bytes hash %x, want %d bytes hash %x", m, got.Sum(nil), n, want.Sum(nil))
	}
	c.Close()
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cid     uint64
		backend vsock.Backend
	}{
		{3, &tcpBackend{}},
		{0, &tcpBackend{}},
		{1 << 32, &tcpBackend{}},
		{16, nil},
	}
	for _, tt := range tests {
		if _, err := vsock.New(tt.cid, tt.backend, nil); err == nil {
			t.Errorf("New(%d, %v): got nil, want an error", tt.cid, tt.backend)
		}
	}
}

func TestConfigAndIdentity(t *testing.T) {
	dev, err := vsock.New(0x11223344, &tcpBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := dev.DeviceID(); got != 19 {
		t.Errorf("got device ID %d, want 19", got)
	}
	if got := len(dev.QueueMaxSizes()); got != 3 {
		t.Errorf("got %d queues, want 3", got)
	}
	b := make([]byte, 8)
	dev.ReadConfig(0, b)
	if got := fmt.Sprintf("% x", b); got != "44 33 22 11 00 00 00 00" {
		t.Errorf("got config %s, want the CID little endian", got)
	}
	b = make([]byte, 4)
	dev.ReadConfig(4, b)
	if got := fmt.Sprintf("% x", b); got != "00 00 00 00" {
		t.Errorf("got config[4:8] %s, want 00 00 00 00", got)
	}
	dev.ReadConfig(8, b)
	if got := fmt.Sprintf("% x", b); got != "00 00 00 00" {
		t.Errorf("got config past end %s, want zeros", got)
	}
}

func TestDeviceGuestToHostEcho(t *testing.T) {
	dev, g := setup(t, map[uint32]func(net.Conn){8000: echo})
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(64 << 20)
	if testing.Short() {
		n = 4 << 20
	}
	roundTrip(t, c, n)
	// The state dump's history dates the REQUEST against the kick that
	// brought it, which tells a late device from a late guest.
	if text := strings.Join(dev.DebugState(), "\n"); !regexp.MustCompile(`guest -> host REQUEST 3:8000 <-> guest:\d+ \(read \d+\.\d{3}s after the guest's last kick\)`).MatchString(text) {
		t.Errorf("state dump lacks the REQUEST's kick age:\n%s", text)
	}
}

// TestDeviceGuestToHostStalledReader sends through a host stream whose
// reader stalls and then reads in small pieces, so the device's direct
// writes from guest memory are cut short and the rest goes through its
// queue: every byte must still arrive once and in order.
func TestDeviceGuestToHostStalledReader(t *testing.T) {
	sinkHash := func(c net.Conn) {
		defer c.Close()
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(64 << 10)
		}
		time.Sleep(200 * time.Millisecond) // the socket fills meanwhile.
		h := sha256.New()
		buf := make([]byte, 1000)
		for i := 0; ; i++ {
			n, err := c.Read(buf)
			h.Write(buf[:n])
			if err != nil {
				break
			}
			if i%500 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		c.Write(h.Sum(nil))
	}
	_, g := setup(t, map[uint32]func(net.Conn){8000: sinkHash})
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, want), io.LimitReader(rand.Reader, 4<<20)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read the host's hash: %v", err)
	}
	if !bytesEqual(got, want.Sum(nil)) {
		t.Fatalf("host hashed %x, guest sent %x", got, want.Sum(nil))
	}
}

func TestDeviceHostToGuestEcho(t *testing.T) {
	dev, g := setup(t, nil)
	l, err := g.Listen(5005)
	if err != nil {
		t.Fatal(err)
	}
	go acceptAll(l, echo)
	host, peer := tcpPair(t)
	if err := dev.ConnectGuest(context.Background(), 5005, peer, nil); err != nil {
		t.Fatal(err)
	}
	n := int64(64 << 20)
	if testing.Short() {
		n = 4 << 20
	}
	roundTrip(t, host, n)
}

func TestDeviceUnservedPortRefusedImmediately(t *testing.T) {
	dev, g := setup(t, nil)
	start := time.Now()
	_, err := g.Dial(vsock.ParentCID, 4444)
	if !errors.Is(err, vsocktest.ErrRefused) {
		t.Fatalf("got %v, want %v", err, vsocktest.ErrRefused)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refusal took %v", d)
	}
	host, peer := tcpPair(t)
	defer host.Close()
	if err := dev.ConnectGuest(context.Background(), 4444, peer, nil); !errors.Is(err, vsock.ErrConnRefused) {
		t.Fatalf("got %v, want %v", err, vsock.ErrConnRefused)
	}
}

func TestDevice100Concurrent(t *testing.T) {
	_, g := setup(t, map[uint32]func(net.Conn){8000: echo})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := g.Dial(vsock.ParentCID, 8000)
			if err != nil {
				errs <- err
				return
			}
			roundTrip(t, c, 1<<20)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStalledGuestDoesNotBlockOthers: a guest socket that never reads
// must not stop another connection.
func TestStalledGuestDoesNotBlockOthers(t *testing.T) {
	flood := func(c net.Conn) {
		buf := make([]byte, 1<<20)
		for {
			if _, err := c.Write(buf); err != nil {
				c.Close()
				return
			}
		}
	}
	_, g := setup(t, map[uint32]func(net.Conn){8000: echo, 8001: flood})
	stalled, err := g.Dial(vsock.ParentCID, 8001)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	time.Sleep(100 * time.Millisecond) // let it fill its window.
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, 8<<20)
}

func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return a.(*net.TCPConn), (<-ch).(*net.TCPConn)
}

// BenchmarkGuestToHost measures guest -> host throughput through the
// device's queues (MB/s).
func BenchmarkGuestToHost(b *testing.B) {
	sink := func(c net.Conn) { io.Copy(io.Discard, c); c.Close() }
	_, g := setup(b, map[uint32]func(net.Conn){8000: sink})
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostToGuest measures host -> guest throughput through the
// device's queues (MB/s).
func BenchmarkHostToGuest(b *testing.B) {
	dev, g := setup(b, nil)
	l, err := g.Listen(5005)
	if err != nil {
		b.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	host, peer := tcpPair(b)
	if err := dev.ConnectGuest(context.Background(), 5005, peer, nil); err != nil {
		b.Fatal(err)
	}
	gc := <-accepted
	defer host.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	go func() {
		for {
			if _, err := host.Write(buf); err != nil {
				return
			}
		}
	}()
	rb := make([]byte, 1<<20)
	b.ResetTimer()
	for b.Loop() {
		if _, err := io.ReadFull(gc, rb); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkManyConns measures connection setup and teardown under load:
// per iteration, 100 host connections to a guest listener at once, each
// sending 64 KiB, half-closing and reading the guest's 8-byte count (what
// scripts/bench-vsock.sh's "100 connections at once" does over the
// hybrid Unix socket).
func BenchmarkManyConns(b *testing.B) {
	const conns, size = 100, 64 << 10
	dev, g := setup(b, nil)
	l, err := g.Listen(5005)
	if err != nil {
		b.Fatal(err)
	}
	go acceptAll(l, func(c net.Conn) {
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		var cnt [8]byte
		binary.BigEndian.PutUint64(cnt[:], uint64(n))
		c.Write(cnt[:])
	})
	buf := make([]byte, size)
	b.SetBytes(conns * size)
	for b.Loop() {
		errs := make(chan error, conns)
		for range conns {
			host, peer := tcpPair(b)
			go func() {
				defer host.Close()
				if err := dev.ConnectGuest(context.Background(), 5005, peer, nil); err != nil {
					errs <- err
					return
				}
				var cnt [8]byte
				_, err := host.Write(buf)
				if err == nil {
					err = host.CloseWrite()
				}
				if err == nil {
					_, err = io.ReadFull(host, cnt[:])
				}
				if err == nil && binary.BigEndian.Uint64(cnt[:]) != size {
					err = fmt.Errorf("guest counted %d bytes, want %d", binary.BigEndian.Uint64(cnt[:]), size)
				}
				errs <- err
			}()
		}
		for range conns {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestMalformedTxPackets sends packets a well-behaved driver never
// sends; the device drops them (resetting the connection they name) and
// keeps serving.
func TestMalformedTxPackets(t *testing.T) {
	hdr := func(op uint16, n uint32) []byte {
		b := make([]byte, vsock.HeaderSize)
		vsock.Header{SrcCID: 16, DstCID: vsock.ParentCID, SrcPort: 1234, DstPort: 8000, Type: vsock.VIRTIO_VSOCK_TYPE_STREAM, Op: op, Len: n, BufAlloc: 4096}.Encode(b)
		return b
	}
	tests := []struct {
		name  string
		parts [][]byte
	}{
		{"short header", [][]byte{make([]byte, 10)}},
		{"empty descriptor", [][]byte{{}}},
		{"length past chain", [][]byte{hdr(vsock.VIRTIO_VSOCK_OP_RW, 100), make([]byte, 50)}},
		{"length over 64 KiB", [][]byte{hdr(vsock.VIRTIO_VSOCK_OP_RW, vsock.MaxPacketPayloadBytes+1), make([]byte, 1000)}},
		{"request with garbage payload", [][]byte{hdr(vsock.VIRTIO_VSOCK_OP_REQUEST, 0), make([]byte, 100)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, g := setup(t, map[uint32]func(net.Conn){8000: echo})
			if err := g.SendRaw(tt.parts...); err != nil {
				t.Fatal(err)
			}
			c, err := g.Dial(vsock.ParentCID, 8000)
			if err != nil {
				t.Fatalf("got %v after a malformed packet, want the device still serving", err)
			}
			roundTrip(t, c, 1<<16)
		})
	}
}

// TestDeviceIdle: Idle is true with no connection, false while one is
// open, and true again once the guest closed it.
func TestDeviceIdle(t *testing.T) {
	dev, g := setup(t, map[uint32]func(net.Conn){8000: echo})
	if !dev.Idle() {
		t.Fatal("Idle() = false before any connection")
	}
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Idle() {
		t.Fatal("Idle() = true with a connection open")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2*vsock.ConnShutdownTimeout + 5*time.Second)
	for !dev.Idle() {
		if time.Now().After(deadline) {
			t.Fatal("Idle() still false long after the connection was closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

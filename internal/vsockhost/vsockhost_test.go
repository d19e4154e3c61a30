package vsockhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdvsock "github.com/mdlayher/vsock"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock/vsocktest"
)

// payloadBytes is how much random data each endpoint test echoes.
func payloadBytes() int64 {
	if testing.Short() {
		return 4 << 20
	}
	return 64 << 20
}

// env assembles Host, Device and a simulated guest as the VMM does.
func env(t *testing.T, opts Options) (*Host, *vsock.Device, *vsocktest.Guest) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	h, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := vsock.New(16, h, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Serve(dev); err != nil {
		t.Fatal(err)
	}
	g, err := vsocktest.Start(dev, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Close()
		dev.Close()
		if err := h.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if v := g.Violations(); len(v) > 0 {
			t.Errorf("device violations: %v", v)
		}
	})
	return h, dev, g
}

// guestEcho starts an echo server in the guest on port.
func guestEcho(t *testing.T, g *vsocktest.Guest, port uint32) {
	t.Helper()
	l, err := g.Listen(port)
	if err != nil {
		t.Fatal(err)
	}
	go vsocktest.ServeEcho(l)
}

// hostEcho starts an echo server on a host listener.
func hostEcho(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go vsocktest.ServeEcho(l)
	return l
}

func TestParseForward(t *testing.T) {
	tests := []struct {
		in      string
		want    Forward
		wantErr string
	}{
		{"8000=127.0.0.1:80", Forward{8000, "127.0.0.1:80"}, ""},
		{"8000=kms.us-east-1.amazonaws.com:443", Forward{8000, "kms.us-east-1.amazonaws.com:443"}, ""},
		{"8000=[::1]:80", Forward{8000, "[::1]:80"}, ""},
		{"8000", Forward{}, "want VSOCKPORT=HOST:PORT"},
		{"x=127.0.0.1:80", Forward{}, "bad vsock port"},
		{"4294967295=127.0.0.1:80", Forward{}, "bad vsock port"},
		{"9000=127.0.0.1:80", Forward{}, "heartbeat"},
		{"8000=127.0.0.1", Forward{}, "missing port"},
		{"8000=:80", Forward{}, "empty host"},
		{"8000=h:0", Forward{}, "bad TCP port"},
		{"8000=h:70000", Forward{}, "bad TCP port"},
	}
	for _, tt := range tests {
		got, err := ParseForward(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseForward(%q): got %v, want error containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseForward(%q): got %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		in      string
		want    Publish
		wantErr string
	}{
		{"8443:443", Publish{"127.0.0.1:8443", 443}, ""},
		{"0.0.0.0:8443:443", Publish{"0.0.0.0:8443", 443}, ""},
		{"[::1]:8443:5005", Publish{"[::1]:8443", 5005}, ""},
		{"0:5005", Publish{"127.0.0.1:0", 5005}, ""},
		{"8443", Publish{}, "want HOSTPORT:ENCLAVEPORT"},
		{"8443:x", Publish{}, "bad vsock port"},
		{"x:443", Publish{}, "bad TCP port"},
		{"70000:443", Publish{}, "bad TCP port"},
		{"a:b:c:443", Publish{}, "too many colons"},
	}
	for _, tt := range tests {
		got, err := ParsePublish(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePublish(%q): got %v, want error containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePublish(%q): got %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"heartbeat forwarded", Options{Forwards: []Forward{{9000, "127.0.0.1:1"}}}, "reserved for the heartbeat"},
		{"duplicate forward", Options{Forwards: []Forward{{1, "127.0.0.1:1"}, {1, "127.0.0.1:2"}}}, "forwarded twice"},
		{"socket dir missing", Options{UDSPath: "/nonexistent/dir/v.sock"}, "listen on"},
		{"publish address busy", Options{Publishes: []Publish{{busy.Addr().String(), 1}}}, "publish enclave port 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.opts, nil)
			if err == nil {
				h.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestHeartbeat(t *testing.T) {
	h, _, g := env(t, Options{HeartbeatTimeout: 5 * time.Second})
	start := time.Now()
	c, err := g.Dial(vsock.ParentCID, HeartbeatPort)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{HeartbeatByte}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != HeartbeatByte {
		t.Fatalf("got %x, %v, want %x", b, err, HeartbeatByte)
	}
	c.Close()
	select {
	case <-h.Heartbeat():
	case <-time.After(time.Second):
		t.Fatal("Heartbeat channel not closed")
	}
	if at, ok := h.HeartbeatAt(); !ok || at.Before(start) {
		t.Errorf("got HeartbeatAt %v, %v, want a time after %v", at, ok, start)
	}
	d, err := h.WaitHeartbeat(context.Background(), start)
	if err != nil || d <= 0 || d > 5*time.Second {
		t.Errorf("got %v, %v, want a positive duration", d, err)
	}
}

func TestHeartbeatErrors(t *testing.T) {
	tests := []struct {
		name string
		send []byte // nil: the guest never connects.
	}{
		{"no heartbeat", nil},
		{"wrong byte", []byte{0x42}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, g := env(t, Options{HeartbeatTimeout: 300 * time.Millisecond})
			if tt.send != nil {
				c, err := g.Dial(vsock.ParentCID, HeartbeatPort)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write(tt.send)
			}
			_, err := h.WaitHeartbeat(context.Background(), time.Now())
			if _, ok := h.HeartbeatAt(); ok {
				t.Errorf("got a heartbeat time, want none")
			}
			if !errors.Is(err, ErrNoHeartbeat) {
				t.Errorf("got %v, want %v", err, ErrNoHeartbeat)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		h, _, _ := env(t, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := h.WaitHeartbeat(ctx, time.Now()); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want %v", err, context.Canceled)
		}
	})
}

// dialUDS connects to the hybrid vsock socket and asks for port.
func dialUDS(path string, port uint32) (*net.UnixConn, string, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(c, "CONNECT %d\n", port)
	// Read the reply a byte at a time so no echoed data is swallowed.
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			c.Close()
			return nil, string(line), err
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	return c.(*net.UnixConn), string(line), nil
}

func TestUDSHostToEnclave(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	_, _, g := env(t, Options{UDSPath: sock})
	guestEcho(t, g, 5005)
	c, line, err := dialUDS(sock, 5005)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "OK ") {
		t.Fatalf("got %q, want OK <port>", line)
	}
	if err := vsocktest.CheckEcho(c, payloadBytes()); err != nil {
		t.Fatal(err)
	}
}

func TestUDSRefusals(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	env(t, Options{UDSPath: sock})
	for _, req := range []string{"CONNECT 5005\n", "HELLO\n", "CONNECT x\n", strings.Repeat("A", 100) + "\n"} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, err := bufio.NewReader(c).ReadString('\n')
		if err == nil || got != "" { // EOF, or a reset if input was left unread.
			t.Errorf("request %.20q: got %q, %v, want the connection closed", req, got, err)
		}
		c.Close()
	}
}

func TestUDSEnclaveToHost(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "v.sock")
	hostEcho(t, "unix", sock+"_8000")
	_, _, g := env(t, Options{UDSPath: sock})
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if err := vsocktest.CheckEcho(c, payloadBytes()); err != nil {
		t.Fatal(err)
	}
}

func TestStaleSocketRemoved(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	h, err := New(Options{UDSPath: sock}, nil)
	if err != nil {
		t.Fatalf("got %v, want the stale socket replaced", err)
	}
	h.Close()
}

func TestTCPForward(t *testing.T) {
	l := hostEcho(t, "tcp", "127.0.0.1:0")
	f, err := ParseForward("8000=" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _, g := env(t, Options{Forwards: []Forward{f}})
	c, err := g.Dial(vsock.ParentCID, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if err := vsocktest.CheckEcho(c, payloadBytes()); err != nil {
		t.Fatal(err)
	}
	// Also reachable at the host CID.
	c, err = g.Dial(vsock.VMADDR_CID_HOST, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if err := vsocktest.CheckEcho(c, 1000); err != nil {
		t.Fatal(err)
	}
}

func TestTCPForwardTargetDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, _, g := env(t, Options{Forwards: []Forward{{8000, addr}}})
	if _, err := g.Dial(vsock.ParentCID, 8000); !errors.Is(err, vsocktest.ErrRefused) {
		t.Errorf("got %v, want %v", err, vsocktest.ErrRefused)
	}
}

func TestPublish(t *testing.T) {
	p, err := ParsePublish("0:5005")
	if err != nil {
		t.Fatal(err)
	}
	h, _, g := env(t, Options{Publishes: []Publish{p}})
	guestEcho(t, g, 5005)
	c, err := net.Dial("tcp", h.PublishAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	if err := vsocktest.CheckEcho(c.(*net.TCPConn), payloadBytes()); err != nil {
		t.Fatal(err)
	}
}

func TestPublish100Concurrent(t *testing.T) {
	h, _, g := env(t, Options{Publishes: []Publish{{"127.0.0.1:0", 5005}}})
	guestEcho(t, g, 5005)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", h.PublishAddrs()[0].String())
			if err != nil {
				t.Error(err)
				return
			}
			if err := vsocktest.CheckEcho(c.(*net.TCPConn), 1<<20); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestPublishToClosedPortClosesClient(t *testing.T) {
	h, _, _ := env(t, Options{Publishes: []Publish{{"127.0.0.1:0", 5005}}})
	c, err := net.Dial("tcp", h.PublishAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("got %d bytes, want the connection closed", n)
	}
}

func TestUnservedPortRefused(t *testing.T) {
	_, _, g := env(t, Options{UDSPath: filepath.Join(t.TempDir(), "v.sock")})
	start := time.Now()
	if _, err := g.Dial(vsock.ParentCID, 4444); !errors.Is(err, vsocktest.ErrRefused) {
		t.Errorf("got %v, want %v", err, vsocktest.ErrRefused)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refusal took %v, want immediate", d)
	}
}

// vsockLoopback reports whether this host can connect AF_VSOCK sockets to
// itself (module vsock_loopback).
func vsockLoopback(t *testing.T) bool {
	l, err := mdvsock.ListenContextID(vmaddrCIDAny, 0, nil)
	if err != nil {
		t.Logf("AF_VSOCK listen: %v", err)
		return false
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	c, err := mdvsock.DialContext(ctx, vmaddrCIDLocal, l.Addr().(*mdvsock.Addr).Port, nil)
	if err != nil {
		t.Logf("AF_VSOCK loopback dial: %v", err)
		return false
	}
	c.Close()
	return true
}

// vmaddrCIDAny is VMADDR_CID_ANY (include/uapi/linux/vm_sockets.h).
const vmaddrCIDAny = 0xFFFF_FFFF

func TestAFVsock(t *testing.T) {
	if !vsockLoopback(t) {
		t.Skip("no AF_VSOCK loopback on this host (modprobe vsock_loopback)")
	}
	l, err := mdvsock.ListenContextID(vmaddrCIDAny, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go vsocktest.ServeEcho(l)
	_, _, g := env(t, Options{AFVsock: true})
	c, err := g.Dial(vsock.ParentCID, l.Addr().(*mdvsock.Addr).Port)
	if err != nil {
		t.Fatal(err)
	}
	if err := vsocktest.CheckEcho(c, payloadBytes()); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock/vsocktest"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"64MiB", 64 << 20, true},
		{"256KiB", 256 << 10, true},
		{"1000", 1000, true},
		{"-1", 0, false},
		{"1GiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q): got %d, %v, want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// fakeHybrid serves a Firecracker-style hybrid vsock socket: CONNECT to
// port 5005 is answered OK and echoed, any other port is closed at once.
func fakeHybrid(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				line, err := bufio.NewReader(c).ReadString('\n') // the client sends nothing more before OK
				if err != nil || line != "CONNECT 5005\n" {
					c.Close()
					return
				}
				c.Write([]byte("OK 1073741824\n"))
				vsocktest.Echo(c)
			}()
		}
	}()
	return path
}

func TestEchoOneHybrid(t *testing.T) {
	e := endpoint{uds: fakeHybrid(t), port: 5005}
	for range 3 {
		c, err := e.dial()
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		r := echoOne(c, 1<<20+17, time.Now())
		if r.err != nil || r.n != 1<<20+17 || string(r.sent) != string(r.echo) {
			t.Errorf("echoOne: got n %d err %v, want %d bytes echoed intact", r.n, r.err, 1<<20+17)
		}
	}
}

func TestDialUnservedPort(t *testing.T) {
	e := endpoint{uds: fakeHybrid(t), port: 5999}
	c, err := e.dial()
	if err == nil {
		c.Close()
		t.Fatal("dial of an unserved port: got success, want an error")
	}
	if !strings.Contains(err.Error(), "no OK line") {
		t.Errorf("dial of an unserved port: got %v, want a missing OK line", err)
	}
}

func TestEchoOneTCPDetectsCorruption(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				buf[0] ^= 1 // flip one bit per read
				c.Write(buf[:n])
			}
			if err != nil {
				c.(*net.TCPConn).CloseWrite()
				c.Close()
				return
			}
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if r := echoOne(c, 64<<10, time.Now()); r.err == nil {
		t.Errorf("echoOne through a corrupting server: got no error, want a SHA-256 mismatch")
	}
}

func TestSink(t *testing.T) {
	dir := t.TempDir()
	path, out := filepath.Join(dir, "p.sock_7000"), filepath.Join(dir, "report.txt")
	ready := make(chan struct{})
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := sink(path, out, time.Minute, func() { close(ready) })
		done <- result{n, err}
	}()
	<-ready
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := "NITROVM-TEST heartbeat=ok\nNITROVM-TEST done failures=0\n"
	if _, err := io.WriteString(c, want); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The sink closes its side once it has everything: the peer sees EOF.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("read after CloseWrite: got %q, %v, want EOF", b, err)
	}
	r := <-done
	if r.err != nil || r.n != int64(len(want)) {
		t.Errorf("sink: got %d bytes, %v, want %d bytes, nil", r.n, r.err, len(want))
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != want {
		t.Errorf("sink file: got %q, %v, want %q", b, err, want)
	}
}

func TestSinkTimeout(t *testing.T) {
	dir := t.TempDir()
	_, err := sink(filepath.Join(dir, "s"), filepath.Join(dir, "o"), 100*time.Millisecond, func() {})
	if err == nil {
		t.Errorf("sink with no connection: got nil error, want a timeout")
	}
}

func TestDialNeedsExactlyOneEndpoint(t *testing.T) {
	tests := []struct {
		name string
		e    endpoint
		want string
	}{
		{"none", endpoint{}, "give exactly one of --uds, --tcp and --cid"},
		{"uds and cid", endpoint{uds: "/x", cid: 7, port: 1}, "give exactly one of --uds, --tcp and --cid"},
		{"tcp and cid", endpoint{tcp: "127.0.0.1:1", cid: 7}, "give exactly one of --uds, --tcp and --cid"},
		{"cid too big", endpoint{cid: 1 << 32, port: 1}, "--cid 4294967296 --port 1: out of range"},
	}
	for _, tt := range tests {
		_, err := tt.e.dial()
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
	if got := (&endpoint{cid: 7}).kind(); got != "afvsock" {
		t.Errorf("kind of a --cid endpoint: got %q, want afvsock", got)
	}
}

package main

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReportPort(t *testing.T) {
	tests := []struct {
		cmdline string
		want    uint32
		ok      bool
	}{
		{"console=ttyS0 nitrovm.test=nsm", 0, false},
		{"nitrovm.test=nsm nitrovm.report=7000\n", 7000, true},
		{"nitrovm.report=7000 nitrovm.report=7001", 7001, true},
		{"nitrovm.report=7000 nitrovm.report=x", 0, false},
		{"nitrovm.report=0", 0, false},
		{"nitrovm.report=4294967295", 0, false},
		{"nitrovm.report=4294967296", 0, false},
		{"xnitrovm.report=7000", 0, false},
	}
	for _, tt := range tests {
		got, ok := reportPort(tt.cmdline)
		if got != tt.want || ok != tt.ok {
			t.Errorf("reportPort(%q): got %v, %v, want %v, %v", tt.cmdline, got, ok, tt.want, tt.ok)
		}
	}
}

// unixPair returns both ends of a connected Unix stream socket, which has
// CloseWrite and deadlines like a vsock connection.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.AcceptUnix()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	return c, p
}

func TestReportChannel(t *testing.T) {
	var console bytes.Buffer
	r := &report{w: &console}
	r.kv("heartbeat", "ok ms=%d", 5)
	guest, parent := unixPair(t)
	r.dialed = true // as connect does
	if err := r.attach(guest); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if err := r.attach(guest); err == nil {
		t.Errorf("second attach: got nil error, want one")
	}
	r.logf("free-form")
	r.kv("check", "nsm result=ok")
	r.line("done failures=0")

	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(parent) // until the guest's CloseWrite
		parent.Close()             // the acknowledgement close waits for
		got <- string(b)
	}()
	start := time.Now()
	r.close()
	if took := time.Since(start); took > reportAckTimeout/2 {
		t.Errorf("close took %v, want well under %v once the parent closed", took, reportAckTimeout)
	}
	want := "NITROVM-TEST heartbeat=ok ms=5\nNITROVM-TEST check=nsm result=ok\nNITROVM-TEST done failures=0\n"
	if s := <-got; s != want {
		t.Errorf("channel: got %q, want %q", s, want)
	}
	if s := console.String(); !strings.HasPrefix(s, "NITROVM-TEST heartbeat=ok ms=5\n") || !strings.HasSuffix(s, want[len("NITROVM-TEST heartbeat=ok ms=5\n"):]) ||
		!strings.Contains(s, "testinit: free-form\n") {
		t.Errorf("console: got %q, want every line and the log line", s)
	}
	if r.sink != nil {
		t.Errorf("sink after close: got %v, want nil", r.sink)
	}
}

func TestReportChannelFailure(t *testing.T) {
	var console bytes.Buffer
	r := &report{w: &console}
	guest, parent := unixPair(t)
	r.dialed = true
	if err := r.attach(guest); err != nil {
		t.Fatalf("attach: %v", err)
	}
	parent.Close()
	guest.Close() // writes now fail
	r.kv("a", "1")
	r.kv("b", "2")
	if r.sink != nil {
		t.Errorf("sink after a failed write: got %v, want nil", r.sink)
	}
	want := "NITROVM-TEST a=1\n"
	if s := console.String(); !strings.HasPrefix(s, want) || !strings.HasSuffix(s, "NITROVM-TEST b=2\n") {
		t.Errorf("console: got %q, want both lines", s)
	}
	r.close() // no channel: returns at once
}

package enclave

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stubLauncher is an in-package Launcher: its instances send the heartbeat
// at once and run until stopped.
type stubLauncher struct{ err error }

func (l stubLauncher) Launch(ctx context.Context, spec Spec) (Instance, error) {
	if l.err != nil {
		return nil, l.err
	}
	in := &stubInstance{hb: make(chan struct{}), done: make(chan struct{})}
	close(in.hb)
	return in, nil
}

type stubInstance struct {
	hb, done chan struct{}
	once     sync.Once
}

func (s *stubInstance) Measurements() json.RawMessage { return json.RawMessage(`{"PCR0":"00"}`) }
func (s *stubInstance) Heartbeat() <-chan struct{}    { return s.hb }
func (s *stubInstance) Done() <-chan struct{}         { return s.done }
func (s *stubInstance) Result() string                { return "" }
func (s *stubInstance) Stop()                         { s.once.Do(func() { close(s.done) }) }

// statusBuf collects a supervisor's status line.
type statusBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{}
}

func newStatusBuf() *statusBuf { return &statusBuf{ch: make(chan struct{})} }
func (s *statusBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *statusBuf) Close() error { close(s.ch); return nil }
func (s *statusBuf) status(t *testing.T) startStatus {
	t.Helper()
	select {
	case <-s.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no status from supervisor")
	}
	var st startStatus
	if err := json.Unmarshal(s.b.Bytes(), &st); err != nil {
		t.Fatalf("status %q: %v", s.b.String(), err)
	}
	return st
}

func reserveForTest(t *testing.T, debug bool) (string, *Record) {
	t.Helper()
	base, err := os.MkdirTemp("", "nvms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	rec := &Record{ID: "i-0-enc1", Name: "x", Slot: 1, CID: 16, State: StateStarting, Debug: debug, HeartbeatTimeout: time.Second}
	rec.OwnerPID, rec.OwnerStart = selfStart()
	dir := filepath.Join(base, rec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	return dir, rec
}

func rawCall(t *testing.T, dir, line string) string {
	t.Helper()
	conn, err := net.Dial("unix", filepath.Join(dir, controlSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(line))
	resp, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestSupervisorControl(t *testing.T) {
	dir, rec := reserveForTest(t, false)
	st := newStatusBuf()
	errc := make(chan error, 1)
	go func() {
		errc <- Supervise(context.Background(), dir, SuperviseOptions{Launcher: stubLauncher{}, Status: st})
	}()
	if got := st.status(t); !got.OK {
		t.Fatalf("status: got %+v, want ok", got)
	}
	tests := []struct {
		req, want string
	}{
		{"nonsense\n", `"error":"bad request`},
		{`{"op":"fly"}` + "\n", `"error":"unknown request \"fly\""`},
		{`{"op":"describe"}` + "\n", `"State":"RUNNING"`},
		{`{"op":"console"}` + "\n", `not started with the debug flag`},
	}
	for _, tt := range tests {
		if got := rawCall(t, dir, tt.req); !strings.Contains(got, tt.want) {
			t.Errorf("request %q: got %q, want it to contain %q", tt.req, got, tt.want)
		}
	}
	// A second supervisor for the same enclave is refused.
	err := Supervise(context.Background(), dir, SuperviseOptions{Launcher: stubLauncher{}})
	if KindOf(err) != KindInvalidArgument {
		t.Errorf("second Supervise: got %v, want KindInvalidArgument", err)
	}
	resp, conn, _, err := controlCall(context.Background(), dir, opTerminate)
	if err != nil || !resp.OK || resp.Record.ID != rec.ID {
		t.Fatalf("terminate: got %+v, %v", resp, err)
	}
	conn.Close()
	if err := <-errc; err != nil {
		t.Errorf("Supervise: got %v, want nil", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("enclave directory after terminate: got %v, want it removed", err)
	}
}

func TestSuperviseFailures(t *testing.T) {
	dir, _ := reserveForTest(t, true)
	st := newStatusBuf()
	err := Supervise(context.Background(), dir, SuperviseOptions{Launcher: stubLauncher{err: errors.New("no kvm")}, Status: st})
	if KindOf(err) != KindBoot || !strings.Contains(err.Error(), "no kvm") {
		t.Errorf("launch failure: got %v, want KindBoot with the cause", err)
	}
	if got := st.status(t); got.OK || got.Kind != KindBoot {
		t.Errorf("launch failure status: got %+v, want a KindBoot failure", got)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("enclave directory after failure: got %v, want it removed", err)
	}
	st = newStatusBuf()
	err = Supervise(context.Background(), filepath.Join(t.TempDir(), "missing"), SuperviseOptions{Status: st})
	if KindOf(err) != KindFileOperation {
		t.Errorf("missing dir: got %v, want KindFileOperation", err)
	}
	if got := st.status(t); got.OK {
		t.Errorf("missing dir status: got %+v, want a failure", got)
	}
}

func TestSuperviseInterrupted(t *testing.T) {
	dir, _ := reserveForTest(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	st := newStatusBuf()
	errc := make(chan error, 1)
	go func() { errc <- Supervise(ctx, dir, SuperviseOptions{Launcher: stubLauncher{}, Status: st}) }()
	st.status(t)
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Supervise after cancel: got %v, want nil", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("enclave directory after cancel: got %v, want it removed", err)
	}
}

func TestConsoleHub(t *testing.T) {
	var log bytes.Buffer
	h := newConsoleHub(&log)
	h.Write(bytes.Repeat([]byte("a"), consoleHistoryBytes))
	h.Write([]byte("tail"))
	c := h.subscribe()
	hist, ok := c.next()
	if !ok || len(hist) != consoleHistoryBytes || !bytes.HasSuffix(hist, []byte("tail")) {
		t.Errorf("history: got %d bytes, %v, want %d ending in tail", len(hist), ok, consoleHistoryBytes)
	}
	if log.Len() != consoleHistoryBytes+4 {
		t.Errorf("log: got %d bytes, want %d", log.Len(), consoleHistoryBytes+4)
	}
	// Byte-sized writes (as the UART makes them) far beyond any per-write
	// queue reach a client that reads only afterwards, in order.
	var want []byte
	for i := range 100000 {
		b := []byte{byte('0' + i%10)}
		want = append(want, b...)
		h.Write(b)
	}
	got, ok := c.next()
	if !ok || !bytes.Equal(got, want) {
		t.Errorf("burst: got %d bytes (ok %v), want the %d written", len(got), ok, len(want))
	}
	// A client that lags by more than consoleClientLagBytes is dropped
	// instead of blocking the guest; it still gets what it had.
	big := bytes.Repeat([]byte("x"), consoleClientLagBytes)
	h.Write(big)
	h.Write([]byte("y"))
	got, ok = c.next()
	if !ok || len(got) != consoleClientLagBytes {
		t.Errorf("slow client: got %d bytes (ok %v), want %d", len(got), ok, consoleClientLagBytes)
	}
	if _, ok := c.next(); ok {
		t.Errorf("slow client: still attached after lagging %d bytes", consoleClientLagBytes+1)
	}
	c.unsubscribe() // already dropped: harmless
	// Closing the hub delivers what is pending, then ends the client.
	c2 := h.subscribe()
	c2.next() // history
	h.Write([]byte("last words"))
	h.close()
	if got, ok := c2.next(); !ok || string(got) != "last words" {
		t.Errorf("after close: got %q, %v, want the pending output", got, ok)
	}
	if _, ok := c2.next(); ok {
		t.Errorf("after close: client not finished")
	}
	c3 := h.subscribe()
	if got, ok := c3.next(); !ok || len(got) == 0 {
		t.Errorf("subscribe after close: got %d bytes, %v, want the history", len(got), ok)
	}
	if _, ok := c3.next(); ok {
		t.Errorf("subscribe after close: client not finished")
	}
}

// countDumper counts Dump calls.
type countDumper struct{ n chan string }

func (c countDumper) Dump(cause string) { c.n <- cause }

// TestDumpOnSignal sends this process SIGUSR1 before the VM exists (it must
// be logged, not kill the process, as SIGUSR1's default action would) and
// after (it must dump the VM).
func TestDumpOnSignal(t *testing.T) {
	var mu sync.Mutex
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logBuf}, nil))
	u := &signalDumper{}
	stop := dumpOnSignal(u, logger)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		s := logBuf.String()
		mu.Unlock()
		if strings.Contains(s, "no VM yet") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGUSR1 before the VM: log %q, want a no-VM-yet line", s)
		}
	}
	d := countDumper{n: make(chan string, 1)}
	u.set(d)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-d.n:
		if cause != "SIGUSR1" {
			t.Errorf("dump cause %q, want SIGUSR1", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGUSR1 after the VM started: no dump")
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestConsoleHubHistory checks that the history is the last
// consoleHistoryBytes written, whatever the sizes of the writes.
func TestConsoleHubHistory(t *testing.T) {
	h := newConsoleHub(nil)
	var all []byte
	for i, n := range []int{1, 100, consoleHistoryBytes - 3, 7, consoleHistoryBytes + 5, 3, 2 * consoleHistoryBytes, 1} {
		b := bytes.Repeat([]byte{byte('a' + i)}, n)
		h.Write(b)
		all = append(all, b...)
		hist, _ := h.subscribe().next()
		if want := all[max(len(all)-consoleHistoryBytes, 0):]; !bytes.Equal(hist, want) {
			t.Fatalf("after write %d: history of %d bytes differs from the last %d written", i, len(hist), len(want))
		}
	}
}

// BenchmarkConsoleHubLine measures the hub's cost for one 80-byte console
// line (the unit the VMM's console now writes) once the history is full,
// with the log in a real file (/dev/null) and no client attached.
func BenchmarkConsoleHubLine(b *testing.B) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := newConsoleHub(f)
	h.Write(bytes.Repeat([]byte("a"), consoleHistoryBytes))
	line := []byte(strings.Repeat("x", 79) + "\n")
	for b.Loop() {
		h.Write(line)
	}
}

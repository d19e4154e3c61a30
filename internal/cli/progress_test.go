package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and slave, the slave sized
// cols x 24.
func openPTY(t *testing.T, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pty slave: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

var (
	testLayerA = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a1", 32)}
	testLayerB = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b2", 32)}
)

// TestPullProgressBars draws one bar per layer on a terminal.
func TestPullProgressBars(t *testing.T) {
	master, slave := openPTY(t, 100)
	p := newPullProgress(slave, false)
	if p.bars == nil {
		t.Fatal("no progress bars on a terminal")
	}
	l := p.Layer(testLayerA, 3<<20, false)
	p.Layer(testLayerB, 1000, true).Done(nil)
	chunk := make([]byte, 64<<10)
	for range 48 {
		l.Write(chunk)
	}
	l.Done(nil)
	done := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b) // EIO once the slave is closed
			buf.Write(b[:n])
			if err != nil {
				done <- buf.Bytes()
				return
			}
		}
	}()
	p.wait()
	slave.Close()
	out := string(<-done)
	for _, want := range []string{"a1a1a1a1a1a1", "3.0 MiB / 3.0 MiB", "pulled", "b2b2b2b2b2b2", "already cached"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
}

// TestPullProgressLines prints one line per finished layer without a
// terminal (or on one of unknown width), nothing with --quiet.
func TestPullProgressLines(t *testing.T) {
	_, zero := openPTY(t, 0)
	for _, tt := range []struct {
		name  string
		w     io.Writer
		quiet bool
		want  string
	}{
		{"pipe", new(bytes.Buffer), false, "layer a1a1a1a1a1a1: pulled (2.0 MiB)\nlayer b2b2b2b2b2b2: already cached (1000 B)\n"},
		{"quiet", new(bytes.Buffer), true, ""},
		{"width 0", zero, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPullProgress(tt.w, tt.quiet)
			if p.bars != nil {
				t.Fatal("progress bars without a sized terminal")
			}
			l := p.Layer(testLayerA, 2<<20, false)
			l.Write(make([]byte, 2<<20))
			l.Done(nil)
			p.Layer(testLayerB, 1000, true).Done(nil)
			failed := p.Layer(testLayerB, 1000, false)
			failed.Done(errors.New("broken")) // the build's error line reports it
			p.wait()
			if b, ok := tt.w.(*bytes.Buffer); ok && b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

package vmm

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/internal/devices/serial"
)

func TestConsoleScanner(t *testing.T) {
	tests := []struct {
		name  string
		input []string
		want  []string
	}{
		{"no panic", []string{"hello\n", "world\r\n"}, nil},
		{"panic", []string{"[    1.0] Kernel panic - not syncing: Attempted to kill init!", " exitcode=0x00000100\r\n", "[ 1.1] Kernel panic - not syncing: again\n"},
			[]string{"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"}},
		{"byte at a time", []string{"K", "ernel panic - not syncing: x", "\n"}, []string{"Kernel panic - not syncing: x"}},
		{"unterminated", []string{"Kernel panic - not syncing: x"}, nil},
		{"after a long partial line", []string{strings.Repeat("z", 3*lineMaxBytes+7), "\r[ 2.2] Kernel panic - not syncing: y\r\n"},
			[]string{"Kernel panic - not syncing: y"}},
		{"marker cut by the window", []string{strings.Repeat("z", lineMaxBytes-5), "Kernel panic - not syncing: y\n"},
			[]string{"Kernel panic - not syncing: y"}},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		var got []string
		c := &consoleScanner{out: &out, onPanic: func(l string) { got = append(got, l) }}
		var all string
		for _, s := range tt.input {
			c.Write([]byte(s))
			all += s
		}
		c.flush()
		if out.String() != all {
			t.Errorf("%s: forwarded %q, want %q", tt.name, out.String(), all)
		}
		if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
			t.Errorf("%s: got panics %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestConsoleScannerVCPUs replays, byte by byte through the UART, the
// console of a CI run where testinit's tty output was still being sent
// by one vCPU's interrupt handler when the kernel panicked on the other:
// the bytes interleaved ("Kernelanic= panic"), and a scanner reading one
// stream of lines found no panic. Each vCPU's own line still has it
// whole; the console output stays as the guest wrote it.
func TestConsoleScannerVCPUs(t *testing.T) {
	writes := []struct {
		vcpu int
		s    string
	}{
		{1, "NITROVM-TEST p"},
		{0, "[    4.273111] Kernel"},
		{1, "anic="},
		{0, " panic - not syncing: Attempted to kill init! exitcode=0x00000000\r\n"},
		{1, "now\r\n"},
	}
	tests := []struct {
		name     string
		sameVCPU bool // every byte as vCPU 0's, as before lines were kept per vCPU.
		want     string
	}{
		{"per vCPU", false, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000"},
		{"one stream", true, ""},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		var got string
		c := &consoleScanner{out: &out, lines: make([][]byte, 2), onPanic: func(l string) { got = l }}
		uart := serial.New(c, nil)
		var all string
		for _, w := range writes {
			vcpu := w.vcpu
			if tt.sameVCPU {
				vcpu = 0
			}
			for i := range len(w.s) {
				uart.WriteFrom(vcpu, 0, []byte{w.s[i]})
			}
			all += w.s
		}
		c.flush()
		if got != tt.want {
			t.Errorf("%s: panic line %q, want %q", tt.name, got, tt.want)
		}
		if out.String() != all {
			t.Errorf("%s: forwarded %q, want the bytes as written, %q", tt.name, out.String(), all)
		}
	}
}

// TestConsoleScannerVCPUIndex checks that an index that is not one of the
// VM's vCPUs shares vCPU 0's line instead of growing the scanner or
// failing.
func TestConsoleScannerVCPUIndex(t *testing.T) {
	var got []string
	c := &consoleScanner{lines: make([][]byte, 2), onPanic: func(l string) { got = append(got, l) }}
	c.WriteFrom(-5, []byte("Kernel panic - not "))
	c.WriteFrom(1, []byte("x\n"))
	c.WriteFrom(1<<30, []byte("syncing: y\n"))
	if len(c.lines) != 2 {
		t.Errorf("lines kept: %d, want 2", len(c.lines))
	}
	if want := []string{"Kernel panic - not syncing: y"}; !slices.Equal(got, want) {
		t.Errorf("panics: got %q, want %q", got, want)
	}
}

// chanWriter sends every write to a channel.
type chanWriter chan string

func (w chanWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

// TestConsoleScannerBuffers checks that output leaves a line at a time, a
// full buffer at once, a partial line after consoleFlushDelay, and a panic
// line before onPanic runs.
func TestConsoleScannerBuffers(t *testing.T) {
	out := make(chanWriter, 16)
	var atPanic int
	c := &consoleScanner{out: out, onPanic: func(string) { atPanic = len(out) }}
	for _, b := range []byte("one\ntw") {
		c.Write([]byte{b})
	}
	if got := <-out; got != "one\n" {
		t.Errorf("first write: got %q, want %q", got, "one\n")
	}
	if got := <-out; got != "tw" { // the partial line, after the delay
		t.Errorf("partial line: got %q, want %q", got, "tw")
	}
	c.Write(bytes.Repeat([]byte("x"), consoleBufBytes+1))
	if got := <-out; len(got) != consoleBufBytes {
		t.Errorf("full buffer: got %d bytes, want %d", len(got), consoleBufBytes)
	}
	c.Write([]byte("\n"))
	if got := <-out; got != "x\n" {
		t.Errorf("rest of the long line: got %q, want %q", got, "x\n")
	}
	c.Write([]byte("Kernel panic - not syncing: x\n"))
	if atPanic != 1 {
		t.Errorf("panic: %d writes before onPanic, want the panic line", atPanic)
	}
	<-out
	c.flush()
	if len(out) != 0 {
		t.Errorf("flush after everything was written: %d more writes", len(out))
	}
}

func TestBus(t *testing.T) {
	var b bus
	if err := b.add(0x3f8, 8, sink{}); err != nil {
		t.Fatal(err)
	}
	if err := b.add(0x60, 5, sink{}); err != nil {
		t.Fatal(err)
	}
	if err := b.add(0x3fc, 2, sink{}); err == nil {
		t.Errorf("overlapping add: got nil error, want one")
	}
	tests := []struct {
		addr    uint64
		wantOK  bool
		wantOff uint64
	}{{0x3f8, true, 0}, {0x3ff, true, 7}, {0x400, false, 0}, {0x64, true, 4}, {0x5f, false, 0}, {0x65, false, 0}}
	for _, tt := range tests {
		_, off, ok := b.find(tt.addr)
		if ok != tt.wantOK || off != tt.wantOff {
			t.Errorf("find(%#x): got %#x %v, want %#x %v", tt.addr, off, ok, tt.wantOff, tt.wantOK)
		}
	}
}

// writeRecorder records Write and WriteFrom calls.
type writeRecorder struct {
	sink
	got []string
}

func (r *writeRecorder) Write(off uint64, data []byte) {
	r.got = append(r.got, fmt.Sprintf("write %d %x", off, data))
}

// vcpuRecorder is a writeRecorder that wants the vCPU.
type vcpuRecorder struct{ writeRecorder }

func (r *vcpuRecorder) WriteFrom(vcpu int, off uint64, data []byte) {
	r.got = append(r.got, fmt.Sprintf("vCPU %d: write %d %x", vcpu, off, data))
}

// TestBusWrite checks that a device with WriteFrom is told the vCPU and
// any other device gets Write.
func TestBusWrite(t *testing.T) {
	plain, wants := &writeRecorder{}, &vcpuRecorder{}
	busWrite(plain, 1, 3, []byte{7})
	busWrite(wants, 1, 3, []byte{7})
	if want := []string{"write 3 07"}; !slices.Equal(plain.got, want) {
		t.Errorf("plain device: got %q, want %q", plain.got, want)
	}
	if want := []string{"vCPU 1: write 3 07"}; !slices.Equal(wants.got, want) {
		t.Errorf("device with WriteFrom: got %q, want %q", wants.got, want)
	}
}

func TestSumRSS(t *testing.T) {
	smaps := `00400000-00800000 r-xp 00000000 08:01 1 /bin/nitrovm
Size:               4096 kB
Rss:                3000 kB
7f0000000000-7f0020000000 rw-p 00000000 00:00 0
Size:             524288 kB
Rss:              200000 kB
7f1000000000-7f1000100000 rw-p 00000000 00:00 0
Rss:                 512 kB
`
	got, err := sumRSSKiB(strings.NewReader(smaps), []uint64{512 << 20})
	if err != nil || got != 3512 {
		t.Errorf("sumRSSKiB: got %d, %v, want 3512, nil", got, err)
	}
}

// BenchmarkConsoleByte measures the VMM's user-space work for one byte of
// the guest's polled 8250 console output: the LSR read and the THR write
// the kernel does per byte (serial8250_console_putchar), through the UART
// and the console scanner into a real file (/dev/null), with a newline
// every 80 bytes like kernel log lines. KVM's exits themselves are not in it.
func BenchmarkConsoleByte(b *testing.B) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c := &consoleScanner{out: f}
	uart := serial.New(c, nil)
	var lsr [1]byte
	line := []byte(strings.Repeat("x", 79) + "\n")
	i := 0
	for b.Loop() {
		uart.Read(5, lsr[:])
		uart.Write(0, line[i:i+1])
		i = (i + 1) % len(line)
	}
	b.StopTimer()
	c.flush()
}

package serial

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

type irqCounter struct{ n int }

func (c *irqCounter) Trigger() error { c.n++; return nil }

func rd(s *Serial, off uint64) byte {
	b := []byte{0xee}
	s.Read(off, b)
	return b[0]
}

func wr(s *Serial, off uint64, v byte) { s.Write(off, []byte{v}) }

func TestTransmit(t *testing.T) {
	var out bytes.Buffer
	irq := &irqCounter{}
	s := New(&out, irq)
	for _, c := range []byte("hi\n") {
		wr(s, uartTX, c)
	}
	if out.String() != "hi\n" {
		t.Errorf("output: got %q, want %q", out.String(), "hi\n")
	}
	if irq.n != 0 {
		t.Errorf("interrupts with IER=0: got %d, want 0", irq.n)
	}
	if got := rd(s, uartLSR); got != 0x60 {
		t.Errorf("LSR: got %#x, want 0x60", got)
	}
	if got := rd(s, uartIIR); got != uartIIRNoInt {
		t.Errorf("IIR: got %#x, want %#x", got, uartIIRNoInt)
	}
	wr(s, uartIER, uartIERTHRI)
	if irq.n != 1 {
		t.Errorf("interrupts after enabling THRI: got %d, want 1", irq.n)
	}
	if got := rd(s, uartIIR); got != uartIIRTHRI {
		t.Errorf("IIR after THRI: got %#x, want %#x", got, uartIIRTHRI)
	}
	if got := rd(s, uartIIR); got != uartIIRNoInt {
		t.Errorf("IIR after reading it: got %#x, want %#x", got, uartIIRNoInt)
	}
	wr(s, uartTX, 'x')
	if irq.n != 2 || rd(s, uartIIR) != uartIIRTHRI {
		t.Errorf("THR write with THRI: got %d interrupts, want 2 and IIR THRI", irq.n)
	}
}

func TestRegisters(t *testing.T) {
	s := New(nil, nil)
	tests := []struct {
		name  string
		setup func()
		off   uint64
		want  byte
	}{
		{"scratch", func() { wr(s, uartSCR, 0x5a) }, uartSCR, 0x5a},
		{"ier mask", func() { wr(s, uartIER, 0xff) }, uartIER, 0x0f},
		{"dll", func() { wr(s, uartLCR, 0x80); wr(s, uartDLL, 1) }, uartDLL, 1},
		{"dlm", func() { wr(s, uartDLM, 2) }, uartDLM, 2},
		{"lcr", func() { wr(s, uartLCR, 0x03) }, uartLCR, 0x03},
		{"ier back", func() {}, uartIER, 0x0f},
		{"msr normal", func() { wr(s, uartMCR, 0) }, uartMSR, 0xb0},
		{"msr loopback", func() { wr(s, uartMCR, uartMCRLoop|uartMCROut2|uartMCRRTS) }, uartMSR, 0x90},
	}
	for _, tt := range tests {
		tt.setup()
		if got := rd(s, tt.off); got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// TestFIFODetection follows Linux's autoconfig (drivers/tty/serial/8250/
// 8250_port.c): after FCR enables the FIFOs, IIR bits 7:6 read 0b11 and the
// port is a 16550A; FIFO reset bits are not kept.
func TestFIFODetection(t *testing.T) {
	s := New(nil, &irqCounter{})
	if got := rd(s, uartIIR) >> 6; got != 0 {
		t.Errorf("IIR FIFO bits before FCR: got %d, want 0 (8250 mode)", got)
	}
	wr(s, uartFCR, uartFCRFIFO|uartFCRClear)
	if got := rd(s, uartIIR); got != uartIIRFIFOs|uartIIRNoInt {
		t.Errorf("IIR with FIFOs: got %#x, want %#x", got, uartIIRFIFOs|uartIIRNoInt)
	}
	if s.fcr != uartFCRFIFO {
		t.Errorf("FCR kept: got %#x, want %#x (reset bits self-clear)", s.fcr, uartFCRFIFO)
	}
	wr(s, uartIER, uartIERTHRI)
	if got := rd(s, uartIIR); got != uartIIRFIFOs|uartIIRTHRI {
		t.Errorf("IIR THRI with FIFOs: got %#x, want %#x", got, uartIIRFIFOs|uartIIRTHRI)
	}
	wr(s, uartFCR, 0)
	if got := rd(s, uartIIR) >> 6; got != 0 {
		t.Errorf("IIR FIFO bits after disabling: got %d, want 0", got)
	}
}

// sourceRecorder is a SourceWriter that records each byte with its vCPU.
type sourceRecorder struct{ got []string }

func (r *sourceRecorder) Write(p []byte) (int, error) { return r.WriteFrom(-1, p) }

func (r *sourceRecorder) WriteFrom(vcpu int, p []byte) (int, error) {
	r.got = append(r.got, fmt.Sprintf("%d:%s", vcpu, p))
	return len(p), nil
}

// TestTransmitFrom checks that an output with WriteFrom learns which vCPU
// sent each byte (Write counts as vCPU 0), and that a byte written in
// loopback mode or to the divisor latch is not sent at all.
func TestTransmitFrom(t *testing.T) {
	r := &sourceRecorder{}
	s := New(r, nil)
	s.WriteFrom(2, uartTX, []byte{'a'})
	wr(s, uartTX, 'b')
	wr(s, uartMCR, uartMCRLoop)
	s.WriteFrom(1, uartTX, []byte{'c'})
	wr(s, uartMCR, 0)
	wr(s, uartLCR, uartLCRDLAB)
	s.WriteFrom(1, uartTX, []byte{'d'})
	wr(s, uartLCR, 0)
	s.WriteFrom(1, uartTX, []byte{'e'})
	if want := []string{"2:a", "0:b", "1:e"}; !slices.Equal(r.got, want) {
		t.Errorf("transmitted: got %q, want %q", r.got, want)
	}
}

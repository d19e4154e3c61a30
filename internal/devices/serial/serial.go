// Package serial emulates a 16550A UART well enough to be a Linux console:
// transmit with THR-empty interrupts, a transmit FIFO, modem-status
// loopback, and no receive path. Register layout from the National
// Semiconductor PC16550D datasheet and Linux include/uapi/linux/serial_reg.h.
//
// The FIFO matters for speed, not fidelity: Linux's 8250 driver detects it
// (FCR write, then IIR bits 7:6) and writes 16 bytes per THR-empty
// interrupt instead of one, so a long console line costs a sixteenth of
// the interrupts. Transmission is instant, so the FIFO is always empty.
package serial

import (
	"io"
	"sync"

	"github.com/nitrovm/nitrovm/internal/devices"
)

// Register offsets (include/uapi/linux/serial_reg.h).
const (
	uartRX  = 0 // receive buffer (DLAB=0, read)
	uartTX  = 0 // transmit holding (DLAB=0, write)
	uartDLL = 0 // divisor latch low (DLAB=1)
	uartIER = 1 // interrupt enable (DLAB=0)
	uartDLM = 1 // divisor latch high (DLAB=1)
	uartIIR = 2 // interrupt identification (read)
	uartFCR = 2 // FIFO control (write)
	uartLCR = 3 // line control
	uartMCR = 4 // modem control
	uartLSR = 5 // line status
	uartMSR = 6 // modem status
	uartSCR = 7 // scratch
)

// Register bits (include/uapi/linux/serial_reg.h).
const (
	uartIERTHRI    = 0x02 // THR-empty interrupt enable
	uartIIRNoInt   = 0x01 // no interrupt pending
	uartIIRTHRI    = 0x02 // THR empty
	uartIIRFIFOs   = 0xc0 // FIFOs enabled (16550A)
	uartFCRFIFO    = 0x01 // enable the FIFOs
	uartFCRClear   = 0x06 // clear RX/TX FIFO: self-clearing, not stored
	uartLCRDLAB    = 0x80 // divisor latch access
	uartLSRTEMT    = 0x40 // transmitter empty
	uartLSRTHRE    = 0x20 // THR empty
	uartMCRLoop    = 0x10 // loopback mode
	uartMCROut2    = 0x08
	uartMCROut1    = 0x04
	uartMCRRTS     = 0x02
	uartMCRDTR     = 0x01
	uartMSRDCD     = 0x80
	uartMSRRI      = 0x40
	uartMSRDSR     = 0x20
	uartMSRCTS     = 0x10
	defaultDivisor = 12 // 9600 baud from the 1.8432 MHz clock
)

// SourceWriter is an output that is told which vCPU transmitted its bytes:
// the VMM's console keeps each vCPU's lines apart, so that a kernel panic
// line stays whole when another vCPU's tty output lands in the middle of
// it. Serial uses WriteFrom instead of Write when its output has it.
type SourceWriter interface {
	WriteFrom(vcpu int, p []byte) (int, error)
}

// Serial is a UART on the port-I/O bus. It is safe for concurrent use.
type Serial struct {
	mu         sync.Mutex
	out        io.Writer
	src        SourceWriter // out, if it implements SourceWriter.
	irq        devices.Interrupt
	ier        byte
	lcr        byte
	mcr        byte
	scr        byte
	fcr        byte // last FIFO control written, reset bits removed
	dll, dlm   byte
	thrPending bool    // a THR-empty interrupt is pending (cleared by reading IIR).
	txBuf      [1]byte // the byte being transmitted (avoids an allocation per byte).
}

// New returns a UART whose transmitted bytes go to out (nil discards them)
// and whose interrupt is irq.
func New(out io.Writer, irq devices.Interrupt) *Serial {
	if out == nil {
		out = io.Discard
	}
	src, _ := out.(SourceWriter)
	return &Serial{out: out, src: src, irq: irq, dll: defaultDivisor, mcr: uartMCROut2}
}

// Read implements devices.BusDevice.Read.
func (s *Serial) Read(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	for i := range data {
		data[i] = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dlab := s.lcr&uartLCRDLAB != 0
	switch offset {
	case uartRX:
		if dlab {
			data[0] = s.dll
		}
	case uartIER:
		if dlab {
			data[0] = s.dlm
		} else {
			data[0] = s.ier
		}
	case uartIIR:
		if s.thrPending {
			data[0] = uartIIRTHRI
			s.thrPending = false
		} else {
			data[0] = uartIIRNoInt
		}
		if s.fcr&uartFCRFIFO != 0 {
			data[0] |= uartIIRFIFOs
		}
	case uartLCR:
		data[0] = s.lcr
	case uartMCR:
		data[0] = s.mcr
	case uartLSR:
		data[0] = uartLSRTHRE | uartLSRTEMT
	case uartMSR:
		data[0] = s.msr()
	case uartSCR:
		data[0] = s.scr
	}
}

// msr returns the modem status: loopback reflects MCR, otherwise the line is up.
func (s *Serial) msr() byte {
	if s.mcr&uartMCRLoop == 0 {
		return uartMSRDCD | uartMSRDSR | uartMSRCTS
	}
	var v byte
	if s.mcr&uartMCROut2 != 0 {
		v |= uartMSRDCD
	}
	if s.mcr&uartMCROut1 != 0 {
		v |= uartMSRRI
	}
	if s.mcr&uartMCRDTR != 0 {
		v |= uartMSRDSR
	}
	if s.mcr&uartMCRRTS != 0 {
		v |= uartMSRCTS
	}
	return v
}

// Write implements devices.BusDevice.Write: a write by vCPU 0.
func (s *Serial) Write(offset uint64, data []byte) { s.WriteFrom(0, offset, data) }

// WriteFrom implements devices.VCPUWriter: a transmitted byte goes to the
// output with vcpu when the output is a SourceWriter.
func (s *Serial) WriteFrom(vcpu int, offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	s.mu.Lock()
	dlab := s.lcr&uartLCRDLAB != 0
	raise := false
	switch offset {
	case uartTX:
		if dlab {
			s.dll = v
			break
		}
		if s.mcr&uartMCRLoop == 0 {
			s.txBuf[0] = v
			// A console that cannot write drops output, as a real line would.
			if s.src != nil {
				_, _ = s.src.WriteFrom(vcpu, s.txBuf[:])
			} else {
				_, _ = s.out.Write(s.txBuf[:])
			}
		}
		if s.ier&uartIERTHRI != 0 {
			s.thrPending, raise = true, true
		}
	case uartIER:
		if dlab {
			s.dlm = v
			break
		}
		old := s.ier
		s.ier = v & 0x0f
		// Enabling THRI while the THR is empty raises it at once.
		if old&uartIERTHRI == 0 && s.ier&uartIERTHRI != 0 {
			s.thrPending, raise = true, true
		}
		if s.ier&uartIERTHRI == 0 {
			s.thrPending = false
		}
	case uartFCR:
		s.fcr = v &^ uartFCRClear
	case uartLCR:
		s.lcr = v
	case uartMCR:
		s.mcr = v & 0x1f
	case uartSCR:
		s.scr = v
	}
	s.mu.Unlock()
	if raise && s.irq != nil {
		_ = s.irq.Trigger() // an irqfd write fails only if the VM is gone.
	}
}

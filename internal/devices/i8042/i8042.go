// Package i8042 emulates the bits of the PC keyboard controller a Linux
// guest uses: the status and command ports its probe reads, and the CPU
// reset line (command 0xFE, or output-port bit 0 cleared) that
// "reboot=k" pulls. There is no keyboard behind it. Command set from the
// IBM PC/AT technical reference as summarised in Linux
// drivers/input/serio/i8042.h.
package i8042

import "sync"

// Offsets of the two registers within the 5-port range starting at 0x60.
const (
	DataOffset    = 0 // port 0x60
	CommandOffset = 4 // port 0x64
	// PortCount is the width of the range to map (0x60-0x64).
	PortCount = 5
)

// Status bits (drivers/input/serio/i8042.h).
const (
	strOBF     = 0x01 // output buffer full
	strSysFlg  = 0x04 // system flag: self-test passed
	strCmdDat  = 0x08 // last write was a command
	strKeylock = 0x10 // set: keyboard not locked
)

// Controller commands (drivers/input/serio/i8042.h).
const (
	cmdCTRRead     = 0x20
	cmdCTRWrite    = 0x60
	cmdAuxDisable  = 0xa7
	cmdAuxEnable   = 0xa8
	cmdAuxTest     = 0xa9
	cmdSelfTest    = 0xaa
	cmdKbdTest     = 0xab
	cmdKbdDisable  = 0xad
	cmdKbdEnable   = 0xae
	cmdOutPortRead = 0xd0
	cmdOutPortWrt  = 0xd1
	cmdAuxLoop     = 0xd3
	cmdAuxSend     = 0xd4
	cmdPulseReset  = 0xfe

	selfTestOK  = 0x55
	kbdAck      = 0xfa
	ctrDefault  = 0x45 // keyboard interrupt, system flag, translate
	outPortBase = 0x01 // output port bit 0: CPU reset line (active low)
)

// Device is an i8042 controller. It is safe for concurrent use.
type Device struct {
	mu      sync.Mutex
	reset   func()
	status  byte
	ctr     byte
	outPort byte
	out     []byte // pending output-buffer bytes, oldest first.
	pending byte   // command waiting for its data byte, or 0.
}

// New returns a controller that calls reset when the guest pulses the CPU
// reset line.
func New(reset func()) *Device {
	return &Device{reset: reset, ctr: ctrDefault, outPort: outPortBase, status: strSysFlg | strKeylock}
}

// Read implements devices.BusDevice.Read.
func (d *Device) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
	if len(data) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch offset {
	case CommandOffset:
		data[0] = d.status
		if len(d.out) > 0 {
			data[0] |= strOBF
		}
	case DataOffset:
		if len(d.out) > 0 {
			data[0] = d.out[0]
			d.out = d.out[1:]
		}
	}
}

// push queues b in the output buffer (bounded: the real one holds one byte).
func (d *Device) push(b byte) {
	if len(d.out) < 16 {
		d.out = append(d.out, b)
	}
}

// Write implements devices.BusDevice.Write.
func (d *Device) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	d.mu.Lock()
	reset := false
	switch offset {
	case CommandOffset:
		d.status |= strCmdDat
		reset = d.command(v)
	case DataOffset:
		d.status &^= strCmdDat
		switch d.pending {
		case cmdCTRWrite:
			d.ctr = v
		case cmdOutPortWrt:
			d.outPort = v
			reset = v&outPortBase == 0
		case cmdAuxLoop:
			d.push(v)
		case cmdAuxSend:
			// No mouse: swallow the byte.
		default:
			d.push(kbdAck) // keyboard command: acknowledge it.
		}
		d.pending = 0
	}
	d.mu.Unlock()
	if reset && d.reset != nil {
		d.reset()
	}
}

// command runs controller command c and reports whether it resets the CPU.
func (d *Device) command(c byte) bool {
	d.pending = 0
	switch c {
	case cmdCTRRead:
		d.push(d.ctr)
	case cmdCTRWrite, cmdOutPortWrt, cmdAuxLoop, cmdAuxSend:
		d.pending = c
	case cmdSelfTest:
		d.out = d.out[:0]
		d.push(selfTestOK)
	case cmdKbdTest, cmdAuxTest:
		d.push(0x00)
	case cmdOutPortRead:
		d.push(d.outPort)
	case cmdPulseReset:
		return true
	case cmdAuxDisable, cmdAuxEnable, cmdKbdDisable, cmdKbdEnable:
	default:
		// Pulse-output-line commands 0xf0-0xff pulse the bits whose mask bit
		// is 0; bit 0 is the CPU reset line.
		if c >= 0xf0 && c&0x01 == 0 {
			return true
		}
	}
	return false
}

package x86

import (
	"encoding/binary"
	"fmt"
)

// AML opcodes and resource descriptors (ACPI 6.4, sections 6.4 and 20).
const (
	amlZeroOp     = 0x00
	amlOneOp      = 0x01
	amlNameOp     = 0x08
	amlBytePrefix = 0x0a
	amlWordPrefix = 0x0b
	amlDWord      = 0x0c
	amlString     = 0x0d
	amlScopeOp    = 0x10
	amlBufferOp   = 0x11
	amlExtOp      = 0x5b
	amlDeviceOp   = 0x82 // after amlExtOp
	amlRootChar   = 0x5c // '\'

	rdMemory32Fixed = 0x86 // large item, Memory32Fixed (6.4.3.4)
	rdExtIRQ        = 0x89 // large item, Extended Interrupt (6.4.3.6)
	rdEndTag        = 0x79 // small item, End Tag, checksum byte follows
	rdMemRW         = 1    // Memory32Fixed info: read/write
	rdIRQConsumer   = 1 << 0
	rdIRQEdge       = 1 << 1 // edge-triggered; polarity bit 2 = 0: active high; bit 3 = 0: exclusive

	rdIO         = 0x47 // small item, I/O port descriptor, 7 bytes (6.4.2.5)
	rdIODecode16 = 1    // I/O descriptor: 16-bit decode
	rdIRQNoFlags = 0x22 // small item, IRQ descriptor without flags (6.4.2.1): edge, active high

	virtioMMIOHID = "LNRO0005" // ACPI _HID Linux's virtio_mmio driver matches.
	eisaPNP0501   = 0x0105d041 // EisaId("PNP0501"): 16550A-compatible COM port
	eisaPNP0303   = 0x0303d041 // EisaId("PNP0303"): IBM enhanced keyboard (i8042)
)

// amlPkg wraps body in a PkgLength-prefixed package (ACPI 6.4, 20.2.4): the
// encoded length counts itself.
func amlPkg(body []byte) []byte {
	n := len(body)
	var hdr []byte
	switch {
	case n+1 < 1<<6:
		hdr = []byte{byte(n + 1)}
	case n+2 < 1<<12:
		l := n + 2
		hdr = []byte{1<<6 | byte(l&0xf), byte(l >> 4)}
	case n+3 < 1<<20:
		l := n + 3
		hdr = []byte{2<<6 | byte(l&0xf), byte(l >> 4), byte(l >> 12)}
	default:
		l := n + 4
		hdr = []byte{3<<6 | byte(l&0xf), byte(l >> 4), byte(l >> 12), byte(l >> 20)}
	}
	return append(hdr, body...)
}

// amlInt encodes integer v in its shortest form.
func amlInt(v uint32) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xff:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xffff:
		return []byte{amlWordPrefix, byte(v), byte(v >> 8)}
	}
	return binary.LittleEndian.AppendUint32([]byte{amlDWord}, v)
}

// amlName encodes Name(seg, obj).
func amlName(seg string, obj []byte) []byte {
	return append(append([]byte{amlNameOp}, seg...), obj...)
}

// virtioCRS returns the _CRS resource template of one virtio-mmio slot.
func virtioCRS(d MMIODevice) []byte {
	le := binary.LittleEndian
	var r []byte
	r = append(r, rdMemory32Fixed, 9, 0, rdMemRW)
	r = le.AppendUint32(r, uint32(d.Addr))
	r = le.AppendUint32(r, uint32(d.Bytes))
	r = append(r, rdExtIRQ, 6, 0, rdIRQConsumer|rdIRQEdge, 1)
	r = le.AppendUint32(r, d.IRQ)
	r = append(r, rdEndTag, 0)
	buf := append(amlInt(uint32(len(r))), r...)
	return append([]byte{amlBufferOp}, amlPkg(buf)...)
}

// legacyDevice returns Device(name) with an EISA _HID and _CRS of the given
// I/O port ranges and ISA IRQ. Under hardware-reduced ACPI Linux maps no
// legacy IRQs by itself, so ISA devices must be declared to get theirs.
func legacyDevice(name string, hid uint32, ports [][2]uint16, irq uint) []byte {
	le := binary.LittleEndian
	var r []byte
	for _, p := range ports {
		r = append(r, rdIO, rdIODecode16)
		r = le.AppendUint16(r, p[0])
		r = le.AppendUint16(r, p[0])
		r = append(r, 1, byte(p[1]))
	}
	r = append(r, rdIRQNoFlags)
	r = le.AppendUint16(r, 1<<irq)
	r = append(r, rdEndTag, 0)
	crs := append([]byte{amlBufferOp}, amlPkg(append(amlInt(uint32(len(r))), r...))...)
	var dev []byte
	dev = append(dev, name...)
	dev = append(dev, amlName("_HID", amlInt(hid))...)
	dev = append(dev, amlName("_UID", amlInt(0))...)
	dev = append(dev, amlName("_CRS", crs)...)
	return append([]byte{amlExtOp, amlDeviceOp}, amlPkg(dev)...)
}

// dsdt returns the DSDT: Scope(\_SB) with COM1 (PNP0501), the i8042
// keyboard controller (PNP0303) and Device(VRnn) per virtio-mmio slot.
func dsdt(devs []MMIODevice) ([]byte, error) {
	if len(devs) > 0xff {
		return nil, fmt.Errorf("x86: %d virtio-mmio devices, at most 255", len(devs))
	}
	var sb []byte
	sb = append(sb, legacyDevice("COM1", eisaPNP0501, [][2]uint16{{SerialPort, SerialPortCount}}, SerialIRQ)...)
	sb = append(sb, legacyDevice("PS2K", eisaPNP0303, [][2]uint16{{I8042DataPort, 1}, {I8042CommandPort, 1}}, I8042IRQ)...)
	for i, d := range devs {
		if d.Addr+d.Bytes > 1<<32 {
			return nil, fmt.Errorf("x86: virtio-mmio window %#x+%#x above 4 GiB", d.Addr, d.Bytes)
		}
		var dev []byte
		dev = append(dev, fmt.Sprintf("VR%02X", i)...)
		dev = append(dev, amlName("_HID", append(append([]byte{amlString}, virtioMMIOHID...), 0))...)
		dev = append(dev, amlName("_UID", amlInt(uint32(i)))...)
		dev = append(dev, amlName("_CRS", virtioCRS(d))...)
		sb = append(sb, amlExtOp, amlDeviceOp)
		sb = append(sb, amlPkg(dev)...)
	}
	scope := append([]byte{amlRootChar, '_', 'S', 'B', '_'}, sb...)
	t := make([]byte, sdtHeaderBytes)
	t = append(t, amlScopeOp)
	t = append(t, amlPkg(scope)...)
	sdtHeader(t, "DSDT", 2)
	sdtChecksum(t)
	return t, nil
}

// Package devices defines the contracts between the VMM's buses and its
// device models. Device models never see KVM or their own base address.
package devices

// BusDevice is a device on the port-I/O or MMIO bus. Offsets are relative
// to the device's base address; len(data) is the access width (1, 2, 4 or 8).
type BusDevice interface {
	// Read fills data with the value at offset.
	Read(offset uint64, data []byte)
	// Write stores data at offset.
	Write(offset uint64, data []byte)
}

// VCPUWriter is implemented by a BusDevice that needs to know which vCPU
// made a write (the UART, whose console keeps each vCPU's lines apart);
// the VMM calls WriteFrom instead of Write on such a device.
type VCPUWriter interface {
	// WriteFrom is Write for an access made by vCPU vcpu.
	WriteFrom(vcpu int, offset uint64, data []byte)
}

// Interrupt is an interrupt line a device can raise. The VMM implements it
// with an irqfd; tests record calls (see package devicetest).
type Interrupt interface {
	// Trigger raises the line (edge-triggered).
	Trigger() error
}

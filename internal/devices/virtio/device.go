// Package virtio implements the virtio-mmio transport (VirtIO 1.1 §4.2,
// version 2 register layout) and split virtqueues (VirtIO 1.1 §2.6) for
// device models such as vsock and nsm.
//
// # Security
//
// Descriptor tables, rings and buffers live in guest memory and are written
// by an untrusted guest. Everything read from them is validated against guest
// RAM (package memory) and against the queue size; a malformed chain is an
// error for that chain, never a panic or an access outside guest RAM.
package virtio

import (
	"github.com/nitrovm/nitrovm/internal/memory"
)

// Device is a virtio device model behind a transport.
//
// The MMIO transport calls every Device method with its register lock held,
// so the calls are serialized with each other and with register accesses.
// The Signaler never takes that lock: a device may call it from any
// goroutine at any time, including while Reset waits for those goroutines.
type Device interface {
	// DeviceID is the virtio device type (VirtIO 1.1 §5; 19 = vsock,
	// 33 = Nitro Secure Module).
	DeviceID() uint32
	// Features returns the device-specific feature bits offered to the
	// driver. The transport adds VIRTIO_F_VERSION_1 itself.
	Features() uint64
	// QueueMaxSizes returns the maximum size of each of the device's queues;
	// its length is the number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device configuration space at offset;
	// bytes past the end of the space read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig stores data into the device configuration space at offset;
	// writes to read-only or absent fields are ignored.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device when the driver sets DRIVER_OK. queues are
	// the driver-configured queues, in device order; signal tells the driver
	// that a queue has new used buffers.
	Activate(mem *memory.Guest, queues []*Queue, signal Signaler) error
	// Notify is called when the driver kicks queue index (QueueNotify
	// register or ioeventfd). It must not block on the guest.
	Notify(queue int)
	// Reset stops the device and forgets its queues; it may be activated
	// again later.
	Reset()
}

// Signaler raises the transport's interrupt on behalf of a device.
type Signaler interface {
	// SignalUsed sets the used-buffer bit of InterruptStatus and raises the
	// interrupt, unless the driver suppressed interrupts for the queue.
	SignalUsed(queue int) error
	// SignalConfig sets the configuration-change bit and raises the interrupt.
	SignalConfig() error
}

package kvm

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Coalesced port-I/O writes (include/uapi/linux/kvm.h, virt/kvm/coalesced_mmio.c):
// KVM appends a guest's writes to a registered zone to a ring in a page
// shared with user space and resumes the guest without an exit to user
// space; the VMM replays them in order later. Reads still exit.
const (
	_KVM_REGISTER_COALESCED_MMIO = 0x4010ae67 // _IOW(KVMIO, 0x67, struct kvm_coalesced_mmio_zone)
	// CapCoalescedMMIO is KVM_CAP_COALESCED_MMIO; its value is the ring's
	// page offset in a vCPU's mapping.
	CapCoalescedMMIO = 15
	// CapCoalescedPIO is KVM_CAP_COALESCED_PIO.
	CapCoalescedPIO = 162
	// coalescedEntryBytes is sizeof(struct kvm_coalesced_mmio).
	coalescedEntryBytes = 24
	// coalescedHeaderBytes is sizeof(struct kvm_coalesced_mmio_ring)
	// without its entries (first, last).
	coalescedHeaderBytes = 8
)

// coalescedZone is struct kvm_coalesced_mmio_zone.
type coalescedZone struct {
	addr uint64
	size uint32
	pio  uint32
}

// RegisterCoalescedPIO makes guest writes to ports [port, port+size)
// coalesced (KVM_REGISTER_COALESCED_MMIO with pio set): they land in the
// ring that VCPU.CoalescedRing returns instead of exiting to user space.
// Callers check CapCoalescedPIO first.
func (vm *VM) RegisterCoalescedPIO(port uint16, size uint32) error {
	z := coalescedZone{addr: uint64(port), size: size, pio: 1}
	if _, e := ioctlPtr(vm.fd, _KVM_REGISTER_COALESCED_MMIO, &z); e != 0 {
		return fmt.Errorf("kvm: KVM_REGISTER_COALESCED_MMIO port %#x+%d: %w", port, size, e)
	}
	return nil
}

// CoalescedRing returns the VM's ring of coalesced writes as mapped with
// c's kvm_run (every vCPU maps the same page), at pageOffset pages (the
// value of CapCoalescedMMIO).
func (c *VCPU) CoalescedRing(pageOffset int) (*CoalescedRing, error) {
	ps := os.Getpagesize()
	if pageOffset < 1 || (pageOffset+1)*ps > len(c.run) {
		return nil, fmt.Errorf("kvm: coalesced ring at page %d is outside the %d-byte vCPU mapping", pageOffset, len(c.run))
	}
	return newCoalescedRing(c.run[pageOffset*ps : (pageOffset+1)*ps])
}

// CoalescedRing is the page KVM appends coalesced writes to (struct
// kvm_coalesced_mmio_ring): KVM is the only producer, and Drain must have
// one caller at a time.
type CoalescedRing struct {
	page []byte
	max  uint32 // KVM_COALESCED_MMIO_MAX for this page size.
}

// newCoalescedRing wraps page, which must outlive the ring.
func newCoalescedRing(page []byte) (*CoalescedRing, error) {
	if len(page) < coalescedHeaderBytes+2*coalescedEntryBytes || len(page)%8 != 0 {
		return nil, fmt.Errorf("kvm: coalesced ring page of %d bytes", len(page))
	}
	return &CoalescedRing{page: page, max: uint32((len(page) - coalescedHeaderBytes) / coalescedEntryBytes)}, nil
}

// Pending reports whether the ring holds writes not yet drained.
func (r *CoalescedRing) Pending() bool {
	return loadUint32(r.page, 0) != loadUint32(r.page, 4)
}

// Drain calls f for every queued write, oldest first (addr is the port
// for port I/O, data its 1 to 8 bytes, valid only during the call), and
// frees each entry after f returns. It returns the number of entries.
// Entries with impossible lengths are skipped; indices out of range (KVM
// never writes them) end the drain and report an error.
func (r *CoalescedRing) Drain(f func(addr uint64, pio bool, data []byte)) (int, error) {
	n := 0
	for {
		first, last := loadUint32(r.page, 0), loadUint32(r.page, 4) // last: acquire, pairs with KVM's smp_wmb.
		if first == last {
			return n, nil
		}
		if first >= r.max || last >= r.max {
			return n, fmt.Errorf("kvm: coalesced ring indices %d, %d outside %d entries", first, last, r.max)
		}
		e := r.page[coalescedHeaderBytes+int(first)*coalescedEntryBytes:][:coalescedEntryBytes]
		addr := binary.LittleEndian.Uint64(e[0:])
		length := binary.LittleEndian.Uint32(e[8:])
		pio := binary.LittleEndian.Uint32(e[12:]) != 0
		if length >= 1 && length <= 8 {
			f(addr, pio, e[16:16+length])
		}
		storeUint32(r.page, 0, (first+1)%r.max) // release: the entry is free for KVM again.
		n++
	}
}

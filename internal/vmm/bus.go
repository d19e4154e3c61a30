package vmm

import (
	"fmt"
	"sort"

	"github.com/nitrovm/nitrovm/internal/devices"
)

// busEntry is a device mapped at [base, base+size).
type busEntry struct {
	base, size uint64
	dev        devices.BusDevice
}

// bus maps address ranges (ports or MMIO) to devices. It is built before
// the vCPUs start and read-only afterwards.
type bus struct {
	entries []busEntry // sorted by base, non-overlapping.
}

// add maps dev at [base, base+size).
func (b *bus) add(base, size uint64, dev devices.BusDevice) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("vmm: bad bus range %#x+%#x", base, size)
	}
	for _, e := range b.entries {
		if base < e.base+e.size && e.base < base+size {
			return fmt.Errorf("vmm: bus range %#x+%#x overlaps %#x+%#x", base, size, e.base, e.size)
		}
	}
	b.entries = append(b.entries, busEntry{base, size, dev})
	sort.Slice(b.entries, func(i, j int) bool { return b.entries[i].base < b.entries[j].base })
	return nil
}

// find returns the device covering addr and addr's offset within it.
func (b *bus) find(addr uint64) (devices.BusDevice, uint64, bool) {
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base+b.entries[i].size > addr })
	if i < len(b.entries) && b.entries[i].base <= addr {
		return b.entries[i].dev, addr - b.entries[i].base, true
	}
	return nil, 0, false
}

// busWrite is dev.Write for an access by vCPU vcpu, made through WriteFrom
// when dev wants to know the vCPU (devices.VCPUWriter).
func busWrite(dev devices.BusDevice, vcpu int, off uint64, data []byte) {
	if w, ok := dev.(devices.VCPUWriter); ok {
		w.WriteFrom(vcpu, off, data)
		return
	}
	dev.Write(off, data)
}

// sink is a device that ignores writes and reads as all-ones bytes, the
// value of an undriven ISA/PCI bus (legacy ports Linux pokes: POST 0x80, DMA
// page 0x87, RTC 0x70/0x71, PCI config 0xcf8/0xcfc, absent COM ports).
type sink struct{}

// Read implements devices.BusDevice.Read.
func (sink) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Write implements devices.BusDevice.Write.
func (sink) Write(uint64, []byte) {}

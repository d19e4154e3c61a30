package vmm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// irqfdInterrupt is a devices.Interrupt backed by an eventfd registered with
// KVM_IRQFD: a write injects an edge on its GSI without a VM exit.
type irqfdInterrupt struct {
	fd  int
	gsi uint32
}

// newIRQFD creates an eventfd and binds it to gsi.
func newIRQFD(vm *kvm.VM, gsi uint32) (*irqfdInterrupt, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("vmm: eventfd for IRQ %d: %w", gsi, err)
	}
	if err := vm.IRQFD(fd, gsi); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &irqfdInterrupt{fd: fd, gsi: gsi}, nil
}

// Trigger implements devices.Interrupt.Trigger.
func (i *irqfdInterrupt) Trigger() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(i.fd, one[:]); err != nil && err != unix.EAGAIN {
		// EAGAIN: the counter is saturated, so the edge is pending anyway.
		return fmt.Errorf("vmm: raise IRQ %d: %w", i.gsi, err)
	}
	return nil
}

// close releases the eventfd (KVM drops the irqfd when it sees the close).
func (i *irqfdInterrupt) close() error { return unix.Close(i.fd) }

// lineInterrupt is a devices.Interrupt that pulses a GSI with KVM_IRQ_LINE.
// Unlike an irqfd into the IOAPIC, which KVM injects from a workqueue, the
// pulse is delivered before the ioctl returns: the UART uses it, as it raises
// one interrupt per transmitted byte from the vCPU thread.
type lineInterrupt struct {
	vm  *kvm.VM
	gsi uint32
}

// Trigger implements devices.Interrupt.Trigger.
func (l lineInterrupt) Trigger() error {
	if err := l.vm.IRQLine(l.gsi, true); err != nil {
		return fmt.Errorf("vmm: raise IRQ %d: %w", l.gsi, err)
	}
	if err := l.vm.IRQLine(l.gsi, false); err != nil {
		return fmt.Errorf("vmm: lower IRQ %d: %w", l.gsi, err)
	}
	return nil
}

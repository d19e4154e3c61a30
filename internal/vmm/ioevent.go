package vmm

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/devices"
	"github.com/nitrovm/nitrovm/internal/kvm"
)

// queueNotifier forwards the guest's QueueNotify writes of one virtqueue
// index, which KVM turns into eventfd signals (KVM_IOEVENTFD with datamatch)
// instead of MMIO exits, to the virtio-mmio transport from a goroutine.
// The eventfd counts: notifications that arrive while one is being handled
// collapse into one more call, which virtio allows (the device processes
// every available buffer on each notification).
type queueNotifier struct {
	f    *os.File
	done chan struct{}
}

// newQueueNotifier registers an ioeventfd for 4-byte writes of queue at
// addr and starts forwarding them to dev as a Write of queue at off.
func newQueueNotifier(vm *kvm.VM, addr uint64, queue uint32, dev devices.BusDevice, off uint64) (*queueNotifier, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("vmm: eventfd for queue notify at %#x: %w", addr, err)
	}
	if err := vm.IOEventFDMatch(fd, addr, 4, false, uint64(queue)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vmm: %w", err)
	}
	// A non-blocking fd goes to the runtime poller, so Close wakes Read.
	n := &queueNotifier{f: os.NewFile(uintptr(fd), "ioeventfd"), done: make(chan struct{})}
	go func() {
		defer close(n.done)
		var buf [8]byte
		var data [4]byte
		binary.LittleEndian.PutUint32(data[:], queue)
		for {
			if _, err := n.f.Read(buf[:]); err != nil {
				return // closed.
			}
			dev.Write(off, data[:])
		}
	}()
	return n, nil
}

// close stops forwarding and releases the eventfd (KVM drops the
// ioeventfd with the VM).
func (n *queueNotifier) close() error {
	err := n.f.Close()
	<-n.done
	return err
}

package vmm

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nitrovm/nitrovm/internal/arch/x86"
	"github.com/nitrovm/nitrovm/internal/devices/serial"
	"github.com/nitrovm/nitrovm/internal/kvm"
)

// coalesceTHRIInterval is how often queued THR writes are replayed while
// the guest has the UART's THR-empty interrupt enabled: such a driver may
// wait for the interrupt those writes raise without exiting again.
const coalesceTHRIInterval = 5 * time.Millisecond

// coalescer replays the port writes KVM queued in its coalesced ring (the
// UART's THR: a polled console byte then costs one exit to user space, the
// LSR read, instead of two). The queue is replayed, in order, before every
// exit is handled, so a device never sees a later access before an
// earlier write; while the UART's THR-empty interrupt is enabled also
// every coalesceTHRIInterval, and once more when the VM stops.
type coalescer struct {
	mu   sync.Mutex // one drainer at a time.
	done bool       // stop ran: the ring may be unmapped; guarded by mu.
	ring *kvm.CoalescedRing
	pio  *bus
	thri atomic.Bool // the UART's THR-empty interrupt is enabled.
	tick *time.Timer // replays while thri; nil until first needed.
	tmu  sync.Mutex  // guards tick.
}

// setupCoalescing registers the UART's THR for coalesced writes when KVM
// offers coalesced port I/O; without it (or if any step fails) every THR
// write exits to user space as before.
func (v *VM) setupCoalescing(uart *serial.Serial) {
	if len(v.vcpus) == 0 {
		return
	}
	pio, err := v.vm.CheckExtension(kvm.CapCoalescedPIO)
	if err != nil || pio <= 0 {
		v.logger.Debug("no coalesced port I/O", "err", err)
		return
	}
	off, err := v.vm.CheckExtension(kvm.CapCoalescedMMIO)
	if err != nil || off <= 0 {
		v.logger.Debug("no coalesced MMIO ring", "err", err)
		return
	}
	ring, err := v.vcpus[0].c.CoalescedRing(off)
	if err != nil {
		v.logger.Debug("no coalesced port I/O", "err", err)
		return
	}
	if err := v.vm.RegisterCoalescedPIO(x86.SerialPort, 1); err != nil {
		v.logger.Debug("no coalesced port I/O", "err", err)
		return
	}
	c := &coalescer{ring: ring, pio: &v.pio}
	uart.WatchTHRI(c.watchTHRI)
	v.coalesce = c
}

// drain replays every queued write; cheap when there is none. Only vCPU
// threads call it (the ring is unmapped with them).
func (c *coalescer) drain() {
	if c == nil || !c.ring.Pending() {
		return
	}
	c.drainChecked()
}

// drainChecked replays every queued write unless stop has run.
func (c *coalescer) drainChecked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || !c.ring.Pending() {
		return
	}
	// The ring's indices are KVM's; a bad one would be a kernel bug, and
	// the writes it hides are lost rather than replayed twice.
	_, _ = c.ring.Drain(c.replay)
}

// replay hands one queued write to its device.
func (c *coalescer) replay(addr uint64, pio bool, data []byte) {
	if !pio {
		return // only port zones are registered.
	}
	if dev, off, ok := c.pio.find(addr); ok {
		dev.Write(off, data)
	}
}

// watchTHRI follows the UART's THR-empty interrupt enable (called without
// the UART's lock).
func (c *coalescer) watchTHRI(on bool) {
	c.thri.Store(on)
	if !on {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.tick == nil {
		c.tick = time.AfterFunc(coalesceTHRIInterval, c.onTick)
	} else {
		c.tick.Reset(coalesceTHRIInterval)
	}
}

// onTick replays queued writes and keeps ticking while THRI is enabled.
func (c *coalescer) onTick() {
	c.drainChecked()
	if c.thri.Load() {
		c.tmu.Lock()
		c.tick.Reset(coalesceTHRIInterval)
		c.tmu.Unlock()
	}
}

// stop replays what is left; afterwards nothing touches the ring. Run
// calls it once the vCPU threads have stopped.
func (c *coalescer) stop() {
	if c == nil {
		return
	}
	c.thri.Store(false)
	c.tmu.Lock()
	if c.tick != nil {
		c.tick.Stop()
	}
	c.tmu.Unlock()
	c.drainChecked()
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
}

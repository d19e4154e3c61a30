package vmm

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nitrovm/nitrovm/internal/arch/x86"
	"github.com/nitrovm/nitrovm/internal/devices/serial"
	"github.com/nitrovm/nitrovm/internal/kvm"
)

// The coalesced ring is also replayed by a timer, for a guest that writes
// THR and then does not exit to user space again (a driver waiting for the
// THR-empty interrupt, or a guest that prints and spins): every
// coalescePollMin while writes keep coming or the THR-empty interrupt is
// enabled, backing off to coalescePollMax (one wake-up a second for an idle
// VM) while the ring stays empty.
const (
	coalescePollMin = 5 * time.Millisecond
	coalescePollMax = time.Second
)

// coalescer replays the port writes KVM queued in its coalesced ring (the
// UART's THR: a polled console byte then costs one exit to user space, the
// LSR read, instead of two). The queue is replayed, in order, before every
// exit is handled, so a device never sees a later access before an
// earlier write; also by the poll timer, and once more when the VM stops.
type coalescer struct {
	mu   sync.Mutex // one drainer at a time.
	done bool       // stop ran: the ring may be unmapped; guarded by mu.
	ring *kvm.CoalescedRing
	pio  *bus
	thri atomic.Bool // the UART's THR-empty interrupt is enabled.

	tmu      sync.Mutex    // guards the fields below.
	tick     *time.Timer   // the poll timer; nil before start.
	interval time.Duration // its current period.
	stopped  bool          // stop ran: the timer is not re-armed.
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

// drainChecked replays every queued write unless stop has run, and
// returns how many there were.
func (c *coalescer) drainChecked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || !c.ring.Pending() {
		return 0
	}
	// The ring's indices are KVM's; a bad one would be a kernel bug, and
	// the writes it hides are lost rather than replayed twice.
	n, _ := c.ring.Drain(c.replay)
	return n
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
// the UART's lock): while it is on, the poll timer runs at its fastest.
func (c *coalescer) watchTHRI(on bool) {
	c.thri.Store(on)
	if !on {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.tick != nil && !c.stopped && c.interval > coalescePollMin {
		c.interval = coalescePollMin
		c.tick.Reset(c.interval)
	}
}

// start starts the poll timer; Run calls it before the vCPUs run.
func (c *coalescer) start() {
	if c == nil {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.interval = coalescePollMin
	c.tick = time.AfterFunc(c.interval, c.onTick)
}

// onTick replays queued writes and re-arms the timer: at its fastest after
// writes or while THRI is enabled, else twice as slow as before.
func (c *coalescer) onTick() {
	n := c.drainChecked()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.stopped {
		return
	}
	if n > 0 || c.thri.Load() {
		c.interval = coalescePollMin
	} else {
		c.interval = min(2*c.interval, coalescePollMax)
	}
	c.tick.Reset(c.interval)
}

// stop replays what is left; afterwards nothing touches the ring. Run
// calls it once the vCPU threads have stopped.
func (c *coalescer) stop() {
	if c == nil {
		return
	}
	c.tmu.Lock()
	c.stopped = true
	if c.tick != nil {
		c.tick.Stop()
	}
	c.tmu.Unlock()
	c.drainChecked()
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
}

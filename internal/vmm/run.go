package vmm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// kickInterval is how often Run re-signals vCPU threads that have not yet
// left KVM_RUN after a stop request.
const kickInterval = 20 * time.Millisecond

// kickSignal interrupts a vCPU thread's KVM_RUN. The Go runtime tolerates
// stray SIGURGs (it uses them for preemption), so no handler is needed.
const kickSignal = unix.SIGURG

// Run runs the vCPUs until the guest resets, halts or panics, a vCPU fails,
// or ctx is done. It returns a non-nil error exactly when the exit reason is
// ExitError. Run may be called once.
func (v *VM) Run(ctx context.Context) (Exit, error) {
	if v.ran {
		return Exit{Reason: ExitError, Detail: "Run called twice"}, errors.New("vmm: Run called twice")
	}
	v.ran = true
	defer reserveProcs(len(v.vcpus))()
	var wg sync.WaitGroup
	for _, vc := range v.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.runVCPU(vc)
		}()
	}
	select {
	case <-v.stopped:
	case <-ctx.Done():
		v.requestStop(Exit{Reason: ExitStopped, Detail: fmt.Sprintf("stop requested (%v)", context.Cause(ctx))})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// immediate_exit covers a vCPU about to enter KVM_RUN; the signal one
	// already inside it.
	for _, vc := range v.vcpus {
		vc.c.SetImmediateExit(true)
	}
	pid := unix.Getpid()
	tick := time.NewTicker(kickInterval)
	defer tick.Stop()
	for waiting := true; waiting; {
		for _, vc := range v.vcpus {
			if tid := vc.tid.Load(); tid > 0 {
				_ = unix.Tgkill(pid, int(tid), kickSignal) // ESRCH: the thread just left.
			}
		}
		select {
		case <-done:
			waiting = false
		case <-tick.C:
		}
	}
	v.console.flush()
	v.collectStats()
	v.mu.Lock()
	e := *v.exit
	v.mu.Unlock()
	var guest []uint64
	for _, r := range v.mem.Regions() {
		guest = append(guest, uint64(len(r.Data)))
	}
	rss, err := vmmRSSKiB(guest)
	v.logger.Debug("vm stopped", "reason", e.Reason, "detail", e.Detail, "vmm_rss_kib_excluding_guest_ram", rss, "rss_error", err)
	if e.Reason == ExitError {
		return e, fmt.Errorf("vmm: %s", e.Detail)
	}
	return e, nil
}

// reserveProcs raises GOMAXPROCS by n for the n vCPU threads of a VM and
// returns the function that lowers it again. A vCPU thread is in KVM_RUN
// nearly all the time, but a system call that returns within the
// scheduler's 20 µs to 10 ms sysmon tick keeps its P, and a vCPU exiting
// that often (console output, timer and MMIO exits) never lets it go. With
// as many busy vCPUs as Ps, the devices' goroutines (ioeventfds, vsock,
// NSM) then wait for sysmon to poll or retake a P instead of running at
// once (BenchmarkDeviceWake; docs/benchmarks.md).
// The restore is skipped when GOMAXPROCS was changed meanwhile (another VM
// of the same process), so concurrent VMs never take each other's Ps.
func reserveProcs(n int) (restore func()) {
	prev := runtime.GOMAXPROCS(0)
	want := prev + n
	runtime.GOMAXPROCS(want)
	return func() {
		if runtime.GOMAXPROCS(0) == want {
			runtime.GOMAXPROCS(prev)
		}
	}
}

// runVCPU is a vCPU thread: it enters the guest and handles exits until the
// VM stops.
func (v *VM) runVCPU(vc *vcpu) {
	runtime.LockOSThread() // never unlocked: the thread dies with the goroutine.
	vc.tid.Store(int32(unix.Gettid()))
	defer vc.tid.Store(0)
	c := vc.c
	if v.vcpuCPUs != nil {
		// The affinity dies with the thread: a locked thread is never
		// reused, and Go starts new threads from a clean template thread,
		// not from a locked one.
		if err := pinThread(v.vcpuCPUs); err != nil {
			v.requestStop(Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: %v", c.ID, err)})
			return
		}
	}
	for {
		vc.serveDump(v.start)
		select {
		case <-v.stopped:
			return
		default:
		}
		if err := c.Run(); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			v.requestStop(Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: KVM_RUN: %v", c.ID, err)})
			return
		}
		vc.recordExit(time.Since(v.start))
		if e, stop := v.handleExit(vc); stop {
			v.requestStop(e)
			return
		}
	}
}

// handleExit services one VM exit and reports whether the VM must stop.
func (v *VM) handleExit(vc *vcpu) (Exit, bool) {
	c := vc.c
	switch r := c.ExitReason(); r {
	case kvm.ExitIO:
		port, size, out, data, err := c.IO()
		if err != nil {
			return Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: %v", c.ID, err)}, true
		}
		dev, off, ok := v.pio.find(uint64(port))
		if !ok {
			dev, off = sink{}, 0
			if v.logger.Enabled(context.Background(), slog.LevelDebug) {
				v.logger.Debug("unhandled port I/O", "vcpu", c.ID, "port", fmt.Sprintf("%#x", port), "out", out, "size", size)
			}
		}
		for i := 0; i+size <= len(data) && size > 0; i += size {
			if out {
				busWrite(dev, c.ID, off, data[i:i+size])
			} else {
				dev.Read(off, data[i:i+size])
			}
		}
	case kvm.ExitMMIO:
		addr, data, write := c.MMIO()
		dev, off, ok := v.mmio.find(addr)
		switch {
		case ok && write:
			busWrite(dev, c.ID, off, data)
		case ok:
			dev.Read(off, data)
		case !write:
			clear(data)
			fallthrough
		default:
			if v.logger.Enabled(context.Background(), slog.LevelDebug) {
				v.logger.Debug("unhandled MMIO", "vcpu", c.ID, "addr", fmt.Sprintf("%#x", addr), "write", write, "size", len(data))
			}
		}
	case kvm.ExitIntr:
	case kvm.ExitHLT:
		return Exit{Reason: ExitReboot, Detail: fmt.Sprintf("guest halted (vCPU %d)", c.ID)}, true
	case kvm.ExitShutdown:
		v.dump(fmt.Sprintf("%s on vCPU %d", TripleFaultMarker, c.ID), vc)
		return Exit{Reason: ExitPanic, Detail: fmt.Sprintf("%s on vCPU %d%s", TripleFaultMarker, c.ID, rip(c))}, true
	case kvm.ExitSystemEvent:
		typ, _ := c.SystemEvent()
		switch typ {
		case kvm.SystemEventShutdown:
			return Exit{Reason: ExitReboot, Detail: "guest shut down"}, true
		case kvm.SystemEventReset:
			return Exit{Reason: ExitReboot, Detail: "guest reset"}, true
		case kvm.SystemEventCrash:
			return Exit{Reason: ExitPanic, Detail: fmt.Sprintf("guest crashed (KVM_SYSTEM_EVENT_CRASH) on vCPU %d", c.ID)}, true
		}
		return Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: unknown KVM system event %d", c.ID, typ)}, true
	case kvm.ExitFailEntry:
		return Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: KVM_EXIT_FAIL_ENTRY, hardware reason %#x", c.ID, c.FailEntry())}, true
	case kvm.ExitInternalError:
		sub, data := c.InternalError()
		hint := ""
		if sub == 1 {
			hint = " (emulation failure: is /dev/kvm PVM? see nitrovm CheckHost)"
		}
		return Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: KVM internal error, suberror %d%s, data %#x%s", c.ID, sub, hint, data, rip(c))}, true
	default:
		return Exit{Reason: ExitError, Detail: fmt.Sprintf("vCPU %d: unexpected KVM exit reason %d%s", c.ID, r, rip(c))}, true
	}
	return Exit{}, false
}

// rip returns ", rip 0x..." for diagnostics, or "" if it cannot be read.
func rip(c *kvm.VCPU) string {
	r, err := c.Regs()
	if err != nil {
		return ""
	}
	return fmt.Sprintf(", rip %#x", r.RIP)
}

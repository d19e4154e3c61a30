package nested

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/vmm"
)

// Classes of L1 faults: failures of the emulated L1 itself (Debian's
// kernel under QEMU's TCG), not of the command it runs. Only these may
// justify running a session again; anything else is the command's failure.
const (
	// FaultL1Panic: L1's kernel printed an oops, BUG or panic on its own
	// console (ttyS1), or L1 reset before init reported the command's exit
	// status.
	FaultL1Panic = "l1-panic"
	// FaultL1Freeze: L1 stopped making progress: init's once-a-second tick
	// on ttyS2 stopped for Options.FreezeAfter while the command ran, or
	// L1's kernel reported that one of its CPUs stopped handling its
	// timer (cpuTimerStall).
	FaultL1Freeze = "l1-freeze"
	// FaultL1StateInGuest: the command failed and its output holds
	// nitrovm's state-dump warning that an L2 vCPU has state no guest can
	// reach (vmm.ForeignStateMarker: CR3 outside guest RAM with paging
	// on), or a guest triple fault whose SVM SHUTDOWN exits L1 recorded
	// at rips inside L1's modules or with a CR3 outside guest RAM
	// (L1TripleFault). nitrovm sets vCPU
	// registers only before the first KVM_RUN, so that state was written
	// below it, by L1's emulation of SVM (see docs/multi-vcpu.md, "Eight
	// guests at once").
	FaultL1StateInGuest = "l1-state-in-guest"
	// FaultL1FalsePageFault: the command failed on a guest triple fault
	// whose SVM SHUTDOWN exits L1 recorded each with a page fault that the
	// guest's own page tables contradict: the faulting address (CR2) is
	// mapped present under the very CR3 the vCPU had, and the fault said
	// not present, or CR2 lies in the IDT (which the CPU only reads), as
	// nitrovm's state dump read those tables from guest RAM right after
	// the fault (L1TripleFault, vmm.KernelMapPrefix). The page walk that failed was
	// L1's emulation of the CPU (QEMU's TCG walking the guest's tables
	// through the nested page tables), not anything nitrovm does: see
	// docs/multi-vcpu.md, "Page faults the page tables contradict".
	FaultL1FalsePageFault = "l1-false-page-fault"
)

// Fault is an L1 fault: its class and the evidence for it (the kernel's
// oops line, how long the ticks stopped, or the state-dump warning line).
type Fault struct {
	Class    string
	Evidence string
}

// Error implements error.
func (f *Fault) Error() string { return f.Class + ": " + f.Evidence }

// errFrozen is the cause with which the watcher stops a frozen L1's QEMU.
var errFrozen = errors.New("L1 froze")

// kernelFaultMarks are the kernel console strings that mark an oops, BUG or
// panic (arch/x86/kernel/dumpstack.c, kernel/panic.c, lib/bug.c).
var kernelFaultMarks = []string{
	"Kernel panic - not syncing",
	"Oops:",
	"BUG:",
	"kernel BUG at",
	"general protection fault",
	"Unable to handle kernel",
}

// cpuTimerStall is what L1's RCU prints when a CPU's timer never fired
// (kernel/rcu/tree_stall.h: "Possible timer handling issue on cpu=N"):
// that CPU of the emulated L1 stopped taking its timer interrupt, seen
// in a CI run on 2026-12-02 from 2 s into L1's boot, before any guest
// ran. A process cannot stop a CPU's timer interrupt; the tasks placed on
// that CPU then never run, and the command only waits out its limits.
const cpuTimerStall = "Possible timer handling issue on cpu="

// stalledCPU returns kernelLog's first cpuTimerStall line, or "".
func stalledCPU(kernelLog string) string {
	i := strings.Index(kernelLog, cpuTimerStall)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(kernelLog[:i], '\n') + 1
	line, _, _ := strings.Cut(kernelLog[start:], "\n")
	return strings.TrimSpace(line)
}

// initDied is the panic the kernel prints when PID 1 (nitrovm's l1init)
// exits: a bug of ours, not an L1 fault.
const initDied = "Attempted to kill init"

// observed is what a run shows about L1 and the command.
type observed struct {
	kernelLog string // L1's kernel console
	frozen    string // the watcher's evidence, "" if L1 kept ticking
	reset     bool   // QEMU ended normally, after init started, without an exit marker
	output    string // init's console: the command's output
	exitCode  int    // the command's exit status, if exited
	exited    bool   // init reported the command's exit status
}

// classify returns the L1 fault that o shows, or nil when there is none.
// In order: the first oops, BUG or panic line on L1's kernel console (a
// panic because init died is not an L1 fault unless an oops came first),
// a freeze (the watcher's, or a CPU that L1's kernel saw stop handling
// its timer), a reset, then a failed command whose output shows L1's state
// in a guest vCPU (CommandFault).
func classify(o observed) *Fault {
	if f, ours := kernelFault(o.kernelLog); f != nil || ours {
		return f
	}
	if o.frozen != "" {
		return &Fault{Class: FaultL1Freeze, Evidence: o.frozen}
	}
	if line := stalledCPU(o.kernelLog); line != "" {
		return &Fault{Class: FaultL1Freeze, Evidence: "L1's kernel: " + line}
	}
	if o.reset {
		return &Fault{Class: FaultL1Panic, Evidence: "L1 reset before init reported the exit status (no kernel message)"}
	}
	if o.exited {
		return CommandFault(o.output, o.exitCode)
	}
	return nil
}

// StateInGuest returns an l1-state-in-guest fault when a command that
// exited with exitCode failed (non-zero) and its output has a line with
// vmm.ForeignStateMarker, the line being the evidence; else nil. A passing
// command is never a fault, whatever it printed, and neither is a failure
// without the marker: that one is the command's (or nitrovm's).
func StateInGuest(output string, exitCode int) *Fault {
	if exitCode == 0 {
		return nil
	}
	for _, line := range strings.Split(output, "\n") {
		if strings.Contains(line, vmm.ForeignStateMarker) {
			return &Fault{Class: FaultL1StateInGuest, Evidence: strings.TrimSpace(line)}
		}
	}
	return nil
}

// kernelFault returns the l1-panic fault of the first oops, BUG or panic
// line of kernelLog, or nil; ours reports that this line is the panic
// because init died (a bug of ours, not an L1 fault).
func kernelFault(kernelLog string) (f *Fault, ours bool) {
	for _, line := range strings.Split(kernelLog, "\n") {
		line = strings.TrimSpace(line)
		for _, m := range kernelFaultMarks {
			if !strings.Contains(line, m) {
				continue
			}
			if strings.Contains(line, initDied) {
				return nil, true
			}
			return &Fault{Class: FaultL1Panic, Evidence: line}, false
		}
	}
	return nil, false
}

// pollInterval is how often the watcher reads the kernel console and tick
// files.
const pollInterval = 500 * time.Millisecond

// watcher follows a running L1: it copies new kernel console bytes to an
// observer and kills QEMU (cause errFrozen) when init's ticks stop for
// freezeAfter while the command runs.
type watcher struct {
	kernelPath, ticksPath string
	kernelOut             io.Writer
	freezeAfter           time.Duration
	cons                  *console
	kill                  context.CancelCauseFunc

	done, finished chan struct{}
	started        bool

	mu        sync.Mutex
	kernel    bytes.Buffer
	kernelOff int64
	freeze    string
}

func newWatcher(kernelPath, ticksPath string, kernelOut io.Writer, freezeAfter time.Duration, cons *console, kill context.CancelCauseFunc) *watcher {
	return &watcher{kernelPath: kernelPath, ticksPath: ticksPath, kernelOut: kernelOut, freezeAfter: freezeAfter,
		cons: cons, kill: kill, done: make(chan struct{}), finished: make(chan struct{})}
}

// start runs the watcher until stop.
func (w *watcher) start() {
	w.started = true
	go w.watch()
}

// stop ends the watcher and reads the rest of the kernel console.
func (w *watcher) stop() {
	close(w.done)
	if w.started {
		<-w.finished
	}
	w.pollKernel()
}

func (w *watcher) watch() {
	defer close(w.finished)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var size int64
	changed := time.Now()
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
		}
		w.pollKernel()
		if w.cons.finished() {
			continue // the command has ended; L1 is rebooting
		}
		if line := stalledCPU(w.kernelLog()); line != "" {
			w.mu.Lock()
			w.freeze = "L1's kernel: " + line
			w.mu.Unlock()
			w.kill(errFrozen)
			return
		}
		fi, err := os.Stat(w.ticksPath)
		if err != nil || fi.Size() == 0 {
			continue // init has not started ticking yet
		}
		if fi.Size() != size {
			size, changed = fi.Size(), time.Now()
			continue
		}
		if stalled := time.Since(changed); stalled >= w.freezeAfter {
			w.mu.Lock()
			w.freeze = fmt.Sprintf("no tick from L1's init on ttyS2 for %s while the command ran (last tick: %q)",
				stalled.Round(time.Second), lastLine(w.ticksPath))
			w.mu.Unlock()
			w.kill(errFrozen)
			return
		}
	}
}

// pollKernel appends what L1's kernel printed since the last poll.
func (w *watcher) pollKernel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.Open(w.kernelPath)
	if err != nil {
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, w.kernelOff, 1<<40))
	if err != nil || len(b) == 0 {
		return
	}
	w.kernelOff += int64(len(b))
	clean := bytes.ReplaceAll(b, []byte("\r"), nil)
	w.kernel.Write(clean)
	_, _ = w.kernelOut.Write(clean) // a failing observer must not stop L1
}

// kernelLog returns L1's kernel console so far.
func (w *watcher) kernelLog() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kernel.String()
}

// frozen returns the freeze evidence, "" if L1 did not freeze.
func (w *watcher) frozen() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.freeze
}

// lastLine returns the last non-empty line of the file at p.
func lastLine(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(b), "\r", "")), "\n")
	return lines[len(lines)-1]
}

package vmm

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/arch/x86"
	"github.com/nitrovm/nitrovm/internal/kvm"
)

// exitRingSize is how many of its last exits each vCPU remembers.
const exitRingSize = 32

// dumpWait bounds how long a dump waits for a running vCPU thread to
// capture its own state.
const dumpWait = time.Second

// exitRecord is one VM exit as kept in a vCPU's ring.
type exitRecord struct {
	at     time.Duration // since the VM started running.
	reason uint32        // kvm_run.exit_reason.
	addr   uint64        // port (KVM_EXIT_IO) or guest-physical address (KVM_EXIT_MMIO).
	size   uint8         // access size in bytes (IO, MMIO).
	count  uint32        // repeat count (string IO).
	write  bool          // OUT or MMIO write.
	data   uint64        // first bytes written (writes only), little-endian.
}

// exitNames names the exit reasons the VMM handles.
var exitNames = map[uint32]string{
	kvm.ExitUnknown: "unknown", kvm.ExitException: "exception", kvm.ExitIO: "io", kvm.ExitHLT: "hlt",
	kvm.ExitMMIO: "mmio", kvm.ExitShutdown: "shutdown", kvm.ExitFailEntry: "fail_entry",
	kvm.ExitIntr: "intr", kvm.ExitInternalError: "internal_error", kvm.ExitSystemEvent: "system_event",
}

// String formats r as "+1.234567s io out port=0x3f8 size=1 data=0x41".
func (r exitRecord) String() string {
	name, ok := exitNames[r.reason]
	if !ok {
		name = fmt.Sprintf("reason_%d", r.reason)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "+%.6fs %s", r.at.Seconds(), name)
	switch r.reason {
	case kvm.ExitIO:
		dir := "in"
		if r.write {
			dir = "out"
		}
		fmt.Fprintf(&b, " %s port=%#x size=%d", dir, r.addr, r.size)
		if r.count > 1 {
			fmt.Fprintf(&b, " count=%d", r.count)
		}
	case kvm.ExitMMIO:
		dir := "read"
		if r.write {
			dir = "write"
		}
		fmt.Fprintf(&b, " %s addr=%#x size=%d", dir, r.addr, r.size)
	default:
		return b.String()
	}
	if r.write {
		fmt.Fprintf(&b, " data=%#x", r.data)
	}
	return b.String()
}

// exitRing is a fixed-size ring of a vCPU's last exits.
type exitRing struct {
	mu   sync.Mutex
	recs [exitRingSize]exitRecord
	next uint64 // total exits recorded; the next slot is next % exitRingSize.
}

// add records r, replacing the oldest record once the ring is full.
func (g *exitRing) add(r exitRecord) {
	g.mu.Lock()
	g.recs[g.next%exitRingSize] = r
	g.next++
	g.mu.Unlock()
}

// last returns the recorded exits, oldest first, and the total count.
func (g *exitRing) last() ([]exitRecord, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(g.next, exitRingSize)
	out := make([]exitRecord, 0, n)
	for i := g.next - n; i < g.next; i++ {
		out = append(out, g.recs[i%exitRingSize])
	}
	return out, g.next
}

// vcpu is one vCPU with what its thread shares with the rest of the VMM.
type vcpu struct {
	c    *kvm.VCPU
	tid  atomic.Int32 // the thread running it while Run runs, else 0.
	ring exitRing
	// dumpReq hands the vCPU thread a channel to send its state on; the
	// thread checks it after every KVM_RUN return.
	dumpReq chan chan vcpuState
}

// newVCPU wraps c.
func newVCPU(c *kvm.VCPU) *vcpu {
	return &vcpu{c: c, dumpReq: make(chan chan vcpuState, 1)}
}

// recordExit decodes the current exit of vc and adds it to its ring.
func (vc *vcpu) recordExit(at time.Duration) {
	r := exitRecord{at: at, reason: vc.c.ExitReason()}
	switch r.reason {
	case kvm.ExitIO:
		port, size, out, data, err := vc.c.IO()
		if err != nil {
			break
		}
		r.addr, r.size, r.write = uint64(port), uint8(size), out
		if size > 0 {
			r.count = uint32(len(data) / size)
		}
		if out {
			r.data = leUint(data)
		}
	case kvm.ExitMMIO:
		addr, data, write := vc.c.MMIO()
		r.addr, r.size, r.write = addr, uint8(len(data)), write
		if write {
			r.data = leUint(data)
		}
	}
	vc.ring.add(r)
}

// leUint returns the first (up to 8) bytes of b as a little-endian number.
func leUint(b []byte) uint64 {
	var x [8]byte
	copy(x[:], b)
	return binary.LittleEndian.Uint64(x[:])
}

// serveDump answers a pending dump request from the vCPU's own thread.
func (vc *vcpu) serveDump(since time.Time) {
	select {
	case reply := <-vc.dumpReq:
		reply <- vc.capture(since)
	default:
	}
}

// vcpuState is everything a dump shows about one vCPU.
type vcpuState struct {
	id       int
	regs     kvm.Regs
	sregs    kvm.Sregs
	events   kvm.VCPUEvents
	mpState  uint32
	lapic    kvm.LAPICState
	xcr0     uint64
	errs     []string // state that could not be read.
	exits    []exitRecord
	total    uint64 // exits since the start.
	noAnswer bool   // the vCPU thread did not answer; only exits are known.
	at       time.Duration
	notes    []string // what the dumper found wrong with the state (foreignState).
}

// cr0PG is CR0.PG: paging on, so CR3 must hold a guest-physical address.
const cr0PG = 1 << 31

// ForeignStateMarker is in the dump's WARNING line for a vCPU whose state no
// guest can reach by itself (see foreignState). Nested, the end-to-end
// harness (package nested) matches it to tell this emulator fault from a
// failure of nitrovm's.
const ForeignStateMarker = "is outside guest RAM: not the guest's own state"

// TripleFaultMarker starts the exit detail (and the state dump's cause) of
// a guest triple fault, which KVM reports as KVM_EXIT_SHUTDOWN. Nested,
// package nested matches it to look for L1's recorded SVM SHUTDOWN exit
// (see nested.L1TripleFault).
const TripleFaultMarker = "guest triple fault (KVM_EXIT_SHUTDOWN)"

// foreignState returns notes on state no guest can reach by itself, which
// points below the VMM: with paging on, a CR3 whose page table is not in
// guest RAM (inRAM reports whether a guest-physical address is). Nested,
// that is an L1 address the emulator wrote over the guest's (see
// docs/multi-vcpu.md, "Eight guests at once").
func foreignState(s vcpuState, inRAM func(gpa uint64) bool) []string {
	if s.noAnswer || s.sregs.CR0&cr0PG == 0 {
		return nil
	}
	if pt := s.sregs.CR3 &^ 0xfff; !inRAM(pt) {
		return []string{fmt.Sprintf("cr3=%#x %s (nested: the L1 emulator replaced it; see docs/multi-vcpu.md)", s.sregs.CR3, ForeignStateMarker)}
	}
	return nil
}

// capture reads vc's state. It must run on vc's thread, or while no thread
// runs vc: KVM serializes vCPU ioctls with KVM_RUN.
func (vc *vcpu) capture(since time.Time) vcpuState {
	s := vcpuState{id: vc.c.ID, at: time.Since(since)}
	var err error
	note := func(e error) {
		if e != nil {
			s.errs = append(s.errs, e.Error())
		}
	}
	s.regs, err = vc.c.Regs()
	note(err)
	s.sregs, err = vc.c.Sregs()
	note(err)
	s.events, err = vc.c.VCPUEvents()
	note(err)
	s.mpState, err = vc.c.MPState()
	note(err)
	s.lapic, err = vc.c.LAPIC()
	note(err)
	s.xcr0, err = vc.c.XCR0()
	note(err)
	s.exits, s.total = vc.ring.last()
	return s
}

// mpStateNames names KVM_GET_MP_STATE values.
var mpStateNames = map[uint32]string{
	kvm.MPStateRunnable: "runnable", kvm.MPStateUninitialized: "uninitialized", kvm.MPStateInitReceived: "init_received",
	kvm.MPStateHalted: "halted", kvm.MPStateSIPIReceived: "sipi_received", kvm.MPStateAPResetHold: "ap_reset_hold",
}

// Local APIC register offsets (Intel SDM vol. 3, table 11-1; Linux
// arch/x86/include/asm/apicdef.h).
const (
	apicID    = 0x20
	apicTPR   = 0x80
	apicPPR   = 0xa0
	apicLDR   = 0xd0
	apicSVR   = 0xf0
	apicISR   = 0x100
	apicTMR   = 0x180
	apicIRR   = 0x200
	apicESR   = 0x280
	apicICR   = 0x300
	apicICR2  = 0x310
	apicLVTT  = 0x320
	apicLINT0 = 0x350
	apicLINT1 = 0x360
	apicLVTE  = 0x370
	apicTMICT = 0x380
	apicTMCCT = 0x390
	apicTDCR  = 0x3e0
)

// apicReg reads the 32-bit local APIC register at off.
func apicReg(l *kvm.LAPICState, off int) uint32 {
	return binary.LittleEndian.Uint32(l.Regs[off:])
}

// apicVectors lists the vectors set in the 256-bit register (ISR, TMR,
// IRR) at off: eight 32-bit words 16 bytes apart.
func apicVectors(l *kvm.LAPICState, off int) string {
	var v []string
	for i := range 8 {
		w := apicReg(l, off+i*0x10)
		for bit := range 32 {
			if w&(1<<bit) != 0 {
				v = append(v, fmt.Sprintf("%#x", i*32+bit))
			}
		}
	}
	return "[" + strings.Join(v, " ") + "]"
}

// seg formats a segment as "sel/base/limit type= dpl= p= l= db=".
func seg(s kvm.Segment) string {
	return fmt.Sprintf("%#x/%#x/%#x type=%d s=%d dpl=%d p=%d l=%d db=%d g=%d unusable=%d",
		s.Selector, s.Base, s.Limit, s.Type, s.S, s.DPL, s.Present, s.L, s.DB, s.G, s.Unusable)
}

// lines formats s for the log, one string per line, each starting with
// "vcpu N".
func (s vcpuState) lines() []string {
	p := fmt.Sprintf("vcpu %d", s.id)
	var out []string
	add := func(format string, args ...any) { out = append(out, p+" "+fmt.Sprintf(format, args...)) }
	if s.noAnswer {
		add("thread did not answer within %v (stuck outside KVM_RUN?): registers unknown", dumpWait)
	} else {
		mp, ok := mpStateNames[s.mpState]
		if !ok {
			mp = fmt.Sprintf("%d", s.mpState)
		}
		r := s.regs
		add("mp_state=%s rip=%#x rsp=%#x rbp=%#x rflags=%#x", mp, r.RIP, r.RSP, r.RBP, r.RFLAGS)
		add("rax=%#x rbx=%#x rcx=%#x rdx=%#x rsi=%#x rdi=%#x", r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI)
		add("r8=%#x r9=%#x r10=%#x r11=%#x r12=%#x r13=%#x r14=%#x r15=%#x", r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15)
		sr := s.sregs
		add("cr0=%#x cr2=%#x cr3=%#x cr4=%#x cr8=%#x efer=%#x apic_base=%#x xcr0=%#x", sr.CR0, sr.CR2, sr.CR3, sr.CR4, sr.CR8, sr.EFER, sr.APICBase, s.xcr0)
		add("gdt=%#x/%#x idt=%#x/%#x", sr.GDT.Base, sr.GDT.Limit, sr.IDT.Base, sr.IDT.Limit)
		add("cs=%s", seg(sr.CS))
		add("ss=%s", seg(sr.SS))
		add("ds=%s", seg(sr.DS))
		add("fs=%s gs_base=%#x", seg(sr.FS), sr.GS.Base)
		add("tr=%s", seg(sr.TR))
		add("ldt=%s", seg(sr.LDT))
		if sr.InterruptBitmap != [4]uint64{} {
			add("pending_interrupt_bitmap=%#x", sr.InterruptBitmap)
		}
		e := s.events
		add("events exception(injected=%d pending=%d nr=%d has_error=%d error=%#x has_payload=%d payload=%#x) interrupt(injected=%d nr=%#x soft=%d shadow=%d) nmi(injected=%d pending=%d masked=%d) sipi_vector=%#x smi(smm=%d pending=%d) triple_fault_pending=%d flags=%#x",
			e.ExceptionInjected, e.ExceptionPending, e.ExceptionNr, e.ExceptionHasErrorCode, e.ExceptionErrorCode, e.ExceptionHasPayload, e.ExceptionPayload,
			e.InterruptInjected, e.InterruptNr, e.InterruptSoft, e.InterruptShadow,
			e.NMIInjected, e.NMIPending, e.NMIMasked, e.SIPIVector, e.SMISMM, e.SMIPending, e.TripleFaultPending, e.Flags)
		l := &s.lapic
		add("lapic id=%#x tpr=%#x ppr=%#x ldr=%#x svr=%#x esr=%#x icr=%#x:%#x lvt_timer=%#x tmict=%#x tmcct=%#x tdcr=%#x lint0=%#x lint1=%#x lvt_error=%#x",
			apicReg(l, apicID)>>24, apicReg(l, apicTPR), apicReg(l, apicPPR), apicReg(l, apicLDR), apicReg(l, apicSVR), apicReg(l, apicESR),
			apicReg(l, apicICR2), apicReg(l, apicICR), apicReg(l, apicLVTT), apicReg(l, apicTMICT), apicReg(l, apicTMCCT), apicReg(l, apicTDCR),
			apicReg(l, apicLINT0), apicReg(l, apicLINT1), apicReg(l, apicLVTE))
		add("lapic isr=%s irr=%s tmr=%s", apicVectors(l, apicISR), apicVectors(l, apicIRR), apicVectors(l, apicTMR))
		for _, e := range s.errs {
			add("error %s", e)
		}
		for _, n := range s.notes {
			add("WARNING %s", n)
		}
	}
	add("last %d of %d exits (oldest first; state read at +%.6fs):", len(s.exits), s.total, s.at.Seconds())
	for _, r := range s.exits {
		add("  %s", r)
	}
	return out
}

// The messages of the records that open and close a dump in the VM's log
// (log/slog text: msg="vm state dump begins"). Test harnesses that copy
// dumps out of supervisor logs (test/e2e) match them.
const (
	DumpBeginsMsg = "vm state dump begins"
	DumpEndsMsg   = "vm state dump ends"
)

// dumpState serializes the dumps of one VM: mu is held by the dumper while
// it waits for the vCPU threads.
type dumpState struct {
	mu sync.Mutex
}

// debugger is implemented by devices and transports that can describe
// their state for a dump (virtqueue indices, connections).
type debugger interface {
	DebugState() []string
}

// Dump writes every vCPU's registers, special registers, pending events,
// MP state, local APIC and last exits, then each device's debug state, to
// the VM's log at warning level, one record per line, with cause. It is
// for diagnosing hangs (SIGUSR1) and runs while the VM runs: each running
// vCPU is kicked out of KVM_RUN and reads its own state.
func (v *VM) Dump(cause string) {
	v.dump(cause, nil)
}

// dump is Dump called from the thread of vCPU self (nil: from elsewhere),
// which captures itself inline. A dump already running makes a vCPU
// thread's dump report only that vCPU, so two vCPUs never wait on each
// other.
func (v *VM) dump(cause string, self *vcpu) {
	if self != nil {
		if !v.dumps.mu.TryLock() {
			st := self.capture(v.start)
			st.notes = foreignState(st, v.inRAM)
			v.logDump(cause, []vcpuState{st}, false)
			return
		}
	} else {
		v.dumps.mu.Lock()
	}
	defer v.dumps.mu.Unlock()
	states := make([]vcpuState, len(v.vcpus))
	replies := make([]chan vcpuState, len(v.vcpus))
	pid := unix.Getpid()
	for i, vc := range v.vcpus {
		if vc == self {
			continue
		}
		tid := vc.tid.Load()
		if tid == 0 {
			states[i] = vc.capture(v.start) // no thread runs it.
			continue
		}
		replies[i] = make(chan vcpuState, 1)
		select {
		case vc.dumpReq <- replies[i]:
		default:
			// A stale request from a timed-out dump: replace it.
			select {
			case <-vc.dumpReq:
			default:
			}
			vc.dumpReq <- replies[i]
		}
		_ = unix.Tgkill(pid, int(tid), kickSignal)
	}
	deadline := time.Now().Add(dumpWait)
	for i, vc := range v.vcpus {
		switch {
		case vc == self:
			states[i] = vc.capture(v.start)
		case replies[i] != nil:
			select {
			case states[i] = <-replies[i]:
			case <-time.After(max(time.Until(deadline), 0)):
				exits, total := vc.ring.last()
				states[i] = vcpuState{id: vc.c.ID, noAnswer: true, exits: exits, total: total, at: time.Since(v.start)}
			}
		}
	}
	for i := range states {
		states[i].notes = foreignState(states[i], v.inRAM)
	}
	v.logDump(cause, states, true)
}

// inRAM reports whether gpa is guest RAM.
func (v *VM) inRAM(gpa uint64) bool {
	_, err := v.mem.Slice(gpa, 1)
	return err == nil
}

// logDump writes the states and, if devices, the devices' debug state.
func (v *VM) logDump(cause string, states []vcpuState, devices bool) {
	v.logger.Warn(DumpBeginsMsg, "cause", cause, "vcpus", len(states))
	for _, s := range states {
		for _, l := range s.lines() {
			v.logger.Warn("vm state", "text", l)
		}
	}
	for _, l := range kernelMaps(states, v.mem.Uint64) {
		v.logger.Warn("vm state", "text", l)
	}
	if devices {
		for _, d := range v.debuggers {
			for _, l := range d.DebugState() {
				v.logger.Warn("vm state", "text", l)
			}
		}
	}
	v.logger.Warn(DumpEndsMsg, "cause", cause)
}

// kernelMapMaxRuns bounds the lines of one kernel map: a Linux guest's
// image window is a few runs (text, read-only data, data, a hole or two).
const kernelMapMaxRuns = 32

// KernelMapPrefix starts each line of a dump that gives, for one CR3 the
// vCPUs had, what the guest's own page tables map, read from guest RAM at
// dump time: "kernel map cr3=0x1829000 va=... pa=... prot=r-x page=2M".
// It covers the kernel image window (x86.KernelImageStart to
// KernelImageEnd) and the pages of every vCPU's IDT, GDT and TSS, which
// delivering an exception reads. Nested, the end-to-end harness compares
// a triple fault's page fault, which L1 recorded, with it (package
// nested).
const KernelMapPrefix = "kernel map cr3="

// kernelMaps returns the kernel map lines of every distinct CR3 of the
// states' 4-level long-mode vCPUs (5-level paging is not walked).
func kernelMaps(states []vcpuState, read func(gpa uint64) (uint64, error)) []string {
	var out []string
	seen := map[uint64]bool{}
	windows := mapWindows(states)
	for _, s := range states {
		sr := s.sregs
		ok, nx := longMode4(s)
		if !ok || seen[sr.CR3] {
			continue
		}
		seen[sr.CR3] = true
		head := fmt.Sprintf("%s%#x", KernelMapPrefix, sr.CR3)
		n, failed := 0, false
		for _, w := range windows {
			runs, trunc, err := x86.WalkLongMode(read, sr.CR3, nx, w[0], w[1], kernelMapMaxRuns)
			for _, r := range runs {
				out = append(out, head+" "+r.String())
			}
			n += len(runs)
			switch {
			case err != nil:
				failed = true
				out = append(out, fmt.Sprintf("%s: %v", head, err))
			case trunc:
				out = append(out, fmt.Sprintf("%s: more than %d runs in %#x-%#x, the rest left out", head, kernelMapMaxRuns, w[0], w[1]))
			}
		}
		if n == 0 && !failed {
			out = append(out, head+": nothing mapped")
		}
	}
	return out
}

// longMode4 tells whether s is a vCPU that answered, in long mode with
// 4-level paging (x86.LongMode4), and whether its EFER.NXE is set; the
// results come in x86.LongMode4's order.
func longMode4(s vcpuState) (ok, nx bool) {
	ok, nx = x86.LongMode4(s.sregs)
	return ok && !s.noAnswer, nx
}

// mapWindows returns the page-aligned windows a kernel map covers, sorted
// and merged: the kernel image window and the IDT, GDT and TSS of each
// long-mode vCPU, where they are canonical and in the upper half.
func mapWindows(states []vcpuState) [][2]uint64 {
	ws := [][2]uint64{{x86.KernelImageStart, x86.KernelImageEnd}}
	add := func(base, limit uint64) {
		lo, hi := base&^0xfff, (base+limit+1+0xfff)&^0xfff
		if base>>47 == 0x1ffff && hi > lo { // upper half; hi wraps to 0 at the very top
			ws = append(ws, [2]uint64{lo, hi})
		}
	}
	for _, s := range states {
		if ok, _ := longMode4(s); !ok {
			continue
		}
		add(s.sregs.IDT.Base, uint64(s.sregs.IDT.Limit))
		add(s.sregs.GDT.Base, uint64(s.sregs.GDT.Limit))
		add(s.sregs.TR.Base, uint64(s.sregs.TR.Limit))
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i][0] < ws[j][0] })
	merged := ws[:1]
	for _, w := range ws[1:] {
		last := &merged[len(merged)-1]
		if w[0] <= last[1] {
			last[1] = max(last[1], w[1])
			continue
		}
		merged = append(merged, w)
	}
	return merged
}

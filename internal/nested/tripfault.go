package nested

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nitrovm/nitrovm/internal/arch/x86"
	"github.com/nitrovm/nitrovm/internal/nested/l1init"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// EvidenceShell defines two sh functions for L1 scripts that run several
// commands in one session (the e2e harness). "nitrovm_l1_shutdowns"
// succeeds when L1 recorded an SVM SHUTDOWN exit since the last
// "nitrovm_l1_evidence RC". That one, called after each command with its
// exit status RC, prints, when RC is not 0 or a SHUTDOWN exit was
// recorded (a guest that died during a passing command), what init
// prints after a failed command: a l1init.ShutdownMarker line per
// recorded exit and a l1init.ModuleMarker line per L1 module; then it
// clears the trace buffer, so that each command's lines are its own.
const EvidenceShell = `nitrovm_l1_shutdowns() { grep -qF ' kvm_exit: ' ` + l1init.TraceDir + `/trace 2>/dev/null; }` + "\n" +
	`nitrovm_l1_evidence() { t=` + l1init.TraceDir + `; [ -r "$t/trace" ] || return 0; ` +
	`if [ "$1" != 0 ] || nitrovm_l1_shutdowns; then grep -F -e ' kvm_exit: ' -e ' ` + l1init.CR3Event + `: ' "$t/trace" | sed 's/^ */` + l1init.ShutdownMarker + ` /'; ` +
	`sed 's/^/` + l1init.ModuleMarker + ` /' ` + l1init.ModulesFile + `; fi; : >"$t/trace"; }`

// ModuleRange is an L1 kernel module's memory as /proc/modules gives it:
// [Start, End) is its base (the start of its text) plus its total size.
// Since Linux 6.4 a module's text, data and read-only data may be
// allocated apart, so the range is the text and maybe more, but always in
// L1's module area, where our guests (no modules) run no code.
type ModuleRange struct {
	Name string
	AddrRange
}

// ShutdownExit is one recorded SVM SHUTDOWN exit.
type ShutdownExit struct {
	RIP uint64 // the guest rip at the exit
	// HasCR3 tells whether the CR3 probe recorded the exit's CR3 and the
	// VM's RAM (l1init.CR3Event).
	HasCR3   bool
	CR3      uint64 // the vCPU's CR3 at the exit
	RAMPages uint64 // the VM's memory slots in 4 KiB pages
	// HasCR2 tells whether the probe recorded the guest's CR2 too.
	HasCR2 bool
	CR2    uint64 // the address of the guest's last page fault
	// IntInfo and IntErr are the event being delivered when the vCPU
	// shut down (the VMCB's EXITINTINFO and its error code, kvm_exit's
	// intr_info and error_code), if the line held them.
	HasIntInfo      bool
	IntInfo, IntErr uint32
}

// EXITINTINFO fields (AMD APM Vol. 2, 15.7.2).
const (
	intInfoValid     = 1 << 31
	intInfoTypeMask  = 7 << 8
	intInfoException = 3 << 8
	intInfoVector    = 0xff
	vectorPF         = 14
	// pfPresent is the page-fault error code's P bit: the fault was on
	// a present page (AMD APM Vol. 2, 8.4.2).
	pfPresent = 1 << 0
)

// pageFault tells whether the vCPU shut down while delivering a page
// fault, and that fault's error code.
func (x ShutdownExit) pageFault() (errCode uint32, ok bool) {
	i := x.IntInfo
	return x.IntErr, x.HasIntInfo && i&intInfoValid != 0 && i&intInfoTypeMask == intInfoException && i&intInfoVector == vectorPF
}

// AddrRange is the virtual addresses [Start, End): a guest's for kernel
// maps and IDTs, L1's for modules.
type AddrRange struct{ Start, End uint64 }

// Contains reports whether addr is in r.
func (r AddrRange) Contains(addr uint64) bool { return addr >= r.Start && addr < r.End }

// KernelMapRun is one line of a nitrovm state dump's kernel map
// (vmm.KernelMapPrefix): under CR3, the range is mapped present.
type KernelMapRun struct {
	CR3 uint64
	AddrRange
}

// L1Evidence is what a command's output holds of init's marked lines.
type L1Evidence struct {
	// Exits are the recorded SVM SHUTDOWN exits, in order, each with the
	// CR3 recorded with it.
	Exits []ShutdownExit
	// Modules are L1's modules.
	Modules []ModuleRange
	// Malformed are shutdown lines whose reason or rip could not be read,
	// and CR3 lines that could not be read or follow no exit of their own.
	Malformed []string
	// KernelMaps are the kernel map lines of nitrovm's state dumps in the
	// output: the guest's own page tables, read after the fault.
	KernelMaps []KernelMapRun
	// IDTs are the IDTs of the vCPUs in those dumps, from their
	// "idt=BASE/LIMIT" lines; a reset vCPU's (base 0) is left out.
	IDTs []AddrRange
}

// ParseL1Evidence collects the l1init.ShutdownMarker and
// l1init.ModuleMarker lines of output; a l1init.CR3Event line completes
// the exit recorded just before it. A kvm_exit line of another reason is
// skipped; a module line without a size or a non-zero base is skipped.
func ParseL1Evidence(output string) L1Evidence {
	var ev L1Evidence
	for _, line := range strings.Split(output, "\n") {
		if i := strings.Index(line, l1init.ShutdownMarker+" "); i >= 0 {
			rest := line[i+len(l1init.ShutdownMarker)+1:]
			if strings.Contains(rest, " "+l1init.CR3Event+": ") {
				cr3, pages, cr2, hasCR2, ok := parseCR3(rest)
				n := len(ev.Exits)
				switch {
				case !ok || n == 0 || ev.Exits[n-1].HasCR3:
					ev.Malformed = append(ev.Malformed, strings.TrimSpace(line))
				default:
					x := &ev.Exits[n-1]
					x.HasCR3, x.CR3, x.RAMPages, x.HasCR2, x.CR2 = true, cr3, pages, hasCR2, cr2
				}
				continue
			}
			x, shutdown, ok := parseShutdown(rest)
			switch {
			case !ok:
				ev.Malformed = append(ev.Malformed, strings.TrimSpace(line))
			case shutdown:
				ev.Exits = append(ev.Exits, x)
			}
			continue
		}
		if i := strings.Index(line, vmm.KernelMapPrefix); i >= 0 {
			if r, ok := parseKernelMap(line[i+len(vmm.KernelMapPrefix):]); ok {
				ev.KernelMaps = append(ev.KernelMaps, r)
			}
			continue
		}
		if i := strings.Index(line, " idt="); i >= 0 && strings.Contains(line, " gdt=") {
			if r, ok := parseIDT(line[i+len(" idt="):]); ok {
				ev.IDTs = append(ev.IDTs, r)
			}
		}
		if i := strings.Index(line, l1init.ModuleMarker+" "); i >= 0 {
			if m, ok := parseModule(line[i+len(l1init.ModuleMarker)+1:]); ok {
				ev.Modules = append(ev.Modules, m)
			}
		}
	}
	return ev
}

// parseShutdown reads a kvm_exit trace line, "... kvm_exit: vcpu 0 reason
// shutdown rip 0xffffffff8102b3d3 info1 0x0 info2 0x0 intr_info 0x80000b0e
// error_code 0x00000010": the rip and the event being delivered, whether
// the reason is shutdown, and whether the line could be read at all.
func parseShutdown(line string) (x ShutdownExit, shutdown, ok bool) {
	_, event, found := strings.Cut(line, "kvm_exit: ")
	if !found {
		return x, false, false
	}
	f := strings.Fields(event)
	var reason, ripText, info, code string
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "reason":
			reason = f[i+1]
		case "rip":
			ripText = f[i+1]
		case "intr_info":
			info = f[i+1]
		case "error_code":
			code = f[i+1]
		}
	}
	hex, isHex := strings.CutPrefix(ripText, "0x")
	if reason == "" || !isHex {
		return x, false, false
	}
	rip, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return x, false, false
	}
	x.RIP = rip
	i, errI := strconv.ParseUint(info, 0, 32)
	c, errC := strconv.ParseUint(code, 0, 32)
	if errI == nil && errC == nil {
		x.HasIntInfo, x.IntInfo, x.IntErr = true, uint32(i), uint32(c)
	}
	return x, reason == "shutdown", true
}

// parseCR3 reads a CR3Event line, "... shutdown_cr3:
// (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x4a4000 pages=32768
// id=0 cr2=0xffffffff811d5600": the CR3 and the VM's RAM in pages, and
// the CR2 if the line has one (an older probe's has not).
func parseCR3(line string) (cr3, pages, cr2 uint64, hasCR2, ok bool) {
	var haveCR3, havePages bool
	for _, f := range strings.Fields(line) {
		k, v, found := strings.Cut(f, "=")
		if !found {
			continue
		}
		var err error
		switch k {
		case "cr3":
			cr3, err = strconv.ParseUint(v, 0, 64)
			haveCR3 = err == nil
		case "pages":
			pages, err = strconv.ParseUint(v, 0, 64)
			havePages = err == nil && pages > 0
		case "cr2":
			cr2, err = strconv.ParseUint(v, 0, 64)
			hasCR2 = err == nil
		}
	}
	return cr3, pages, cr2, hasCR2, haveCR3 && havePages
}

// parseKernelMap reads what follows vmm.KernelMapPrefix in a state dump:
// "0x1829000 va=0xffffffff81000000-0xffffffff81600000 pa=0x1000000
// prot=r-x page=2M" (possibly followed by the log line's closing quote).
// Lines that report an error or a truncation are not runs.
func parseKernelMap(s string) (KernelMapRun, bool) {
	f := strings.Fields(strings.ReplaceAll(s, `"`, " "))
	if len(f) < 4 {
		return KernelMapRun{}, false
	}
	var r KernelMapRun
	var err error
	if r.CR3, err = strconv.ParseUint(f[0], 0, 64); err != nil {
		return KernelMapRun{}, false
	}
	va, ok := strings.CutPrefix(f[1], "va=")
	lo, hi, dash := strings.Cut(va, "-")
	prot, okProt := strings.CutPrefix(f[3], "prot=")
	if !ok || !dash || !okProt || len(prot) < 3 { // "r-x": present, whatever its rights
		return KernelMapRun{}, false
	}
	if r.Start, err = strconv.ParseUint(lo, 0, 64); err != nil {
		return KernelMapRun{}, false
	}
	if r.End, err = strconv.ParseUint(hi, 0, 64); err != nil || r.End <= r.Start {
		return KernelMapRun{}, false
	}
	return r, true
}

// parseIDT reads "BASE/LIMIT" (a state dump's "idt=0xfffffe0000000000/0xfff").
func parseIDT(s string) (AddrRange, bool) {
	f := strings.Fields(strings.ReplaceAll(s, `"`, " "))
	if len(f) == 0 {
		return AddrRange{}, false
	}
	b, l, ok := strings.Cut(f[0], "/")
	base, errB := strconv.ParseUint(b, 0, 64)
	limit, errL := strconv.ParseUint(l, 0, 64)
	if !ok || errB != nil || errL != nil || base == 0 || base+limit < base {
		return AddrRange{}, false
	}
	return AddrRange{Start: base, End: base + limit + 1}, true
}

// contradicted returns the kernel map run that shows x's page fault false:
// x shut down delivering a page fault whose error code says the page was
// not present (bit 0 clear), and a run recorded under x's CR3 maps its
// CR2 present. Any access to a present page that faults (a write to a
// read-only page, a fetch from an NX page, a reserved bit) sets bit 0,
// whatever the access was.
//
// Or, whatever event was being delivered: x's CR2 (the last page fault's
// address) lies in a vCPU's IDT that the map under x's CR3 shows present.
// The CPU only reads the IDT, with supervisor rights, and a supervisor
// read of a present page cannot fault; so a page fault there is the
// emulated CPU's, as when delivering an interrupt (intr_info 0x800000ec,
// the local timer) failed at the IDT's #DF entry.
func (ev L1Evidence) contradicted(x ShutdownExit) (KernelMapRun, bool) {
	if !x.HasCR3 || !x.HasCR2 {
		return KernelMapRun{}, false
	}
	code, isPF := x.pageFault()
	notPresent := isPF && code&pfPresent == 0
	inIDT := false
	for _, idt := range ev.IDTs {
		inIDT = inIDT || idt.Contains(x.CR2)
	}
	if !notPresent && !inIDT {
		return KernelMapRun{}, false
	}
	for _, r := range ev.KernelMaps {
		if r.CR3&cr3Page == x.CR3&cr3Page && r.Contains(x.CR2) {
			return r, true
		}
	}
	return KernelMapRun{}, false
}

// cr3Page is the page-table base in a CR3 value: bits 12-51 (the low 12
// bits are flags or a PCID, bit 63 PCID's no-flush hint).
const cr3Page = 0x000f_ffff_ffff_f000

// outsideRAM tells whether the exit's CR3 names a page outside nitrovm's
// guest RAM layout for the VM's memory (x86.RAMLayout): no guest kernel
// runs with such page tables, and nitrovm never writes CR3 once the vCPU
// runs, so the vCPU held state that is not the guest's.
func (x ShutdownExit) outsideRAM() bool {
	if !x.HasCR3 || x.RAMPages > math.MaxUint64/4096 {
		return false
	}
	base := x.CR3 & cr3Page
	for _, r := range x86.RAMLayout(x.RAMPages * 4096) {
		if base >= r.GPA && base-r.GPA < r.Size {
			return false
		}
	}
	return true
}

// parseModule reads a /proc/modules line, "kvm_amd 147456 3 - Live
// 0xffffffffc0389000 (E)".
func parseModule(line string) (ModuleRange, bool) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return ModuleRange{}, false
	}
	size, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || size == 0 {
		return ModuleRange{}, false
	}
	for _, v := range f[2:] {
		hex, ok := strings.CutPrefix(v, "0x")
		if !ok {
			continue
		}
		base, err := strconv.ParseUint(hex, 16, 64)
		if err != nil || base == 0 || base+size < base {
			return ModuleRange{}, false
		}
		return ModuleRange{Name: f[0], AddrRange: AddrRange{base, base + size}}, true
	}
	return ModuleRange{}, false
}

// module returns the module whose range holds addr.
func (ev L1Evidence) module(addr uint64) (ModuleRange, bool) {
	for _, m := range ev.Modules {
		if m.Contains(addr) {
			return m, true
		}
	}
	return ModuleRange{}, false
}

// L1TripleFault returns an L1 fault when a command that exited with
// exitCode failed, its output reports a guest triple fault
// (vmm.TripleFaultMarker), and L1 recorded SHUTDOWN exits (ParseL1Evidence)
// each of which shows the emulated CPU at fault: a guest rip in an L1
// module (code our guests, which load no modules, cannot run), or a CR3
// outside the guest's RAM (see ShutdownExit.outsideRAM), both
// FaultL1StateInGuest; or a page fault that the guest's page tables under
// that CR3 contradict, as the kernel map of nitrovm's state dump in the
// same output shows (FaultL1FalsePageFault, see contradicted). The class
// and evidence are the first exit's. Else nil: no record, a malformed
// one, or any other exit leaves the failure the command's.
func L1TripleFault(output string, exitCode int) *Fault {
	if exitCode == 0 {
		return nil
	}
	return ProvenTripleFault(output)
}

// ProvenTripleFault is L1TripleFault for the output of a command whatever
// its exit status: a guest can die of the emulator's fault while a
// command that does not watch it passes (a stop request the guest took
// just before), and the session it ran in is then not to be trusted.
func ProvenTripleFault(output string) *Fault {
	if !strings.Contains(output, vmm.TripleFaultMarker) {
		return nil
	}
	return RecordedTripleFault(output)
}

// RecordedTripleFault is ProvenTripleFault without its first condition:
// it judges L1's record in output alone, for a guest of any VMM (the A/B
// harness's QEMU guests print no nitrovm marker). Without nitrovm's
// kernel map only the module and CR3 rules can apply.
func RecordedTripleFault(output string) *Fault {
	ev := ParseL1Evidence(output)
	if len(ev.Exits) == 0 || len(ev.Malformed) > 0 {
		return nil
	}
	for _, x := range ev.Exits {
		if _, ok := ev.module(x.RIP); ok || x.outsideRAM() {
			continue
		}
		if _, ok := ev.contradicted(x); !ok {
			return nil
		}
	}
	first := ev.Exits[0]
	if r, ok := ev.contradicted(first); ok {
		return &Fault{Class: FaultL1FalsePageFault, Evidence: fmt.Sprintf(
			"%s: L1 recorded %d SVM SHUTDOWN exit(s), the first at guest rip %#x delivering event %#x (error code %#x) with CR2 %#x under CR3 %#x, which the guest's page tables map present (%#x-%#x) as nitrovm read them after the fault",
			vmm.TripleFaultMarker, len(ev.Exits), first.RIP, first.IntInfo, first.IntErr, first.CR2, first.CR3, r.Start, r.End)}
	}
	if m, ok := ev.module(first.RIP); ok {
		return &Fault{Class: FaultL1StateInGuest, Evidence: fmt.Sprintf(
			"%s: L1 recorded %d SVM SHUTDOWN exit(s), the first at guest rip %#x, inside L1's module %s [%#x, %#x)",
			vmm.TripleFaultMarker, len(ev.Exits), first.RIP, m.Name, m.Start, m.End)}
	}
	return &Fault{Class: FaultL1StateInGuest, Evidence: fmt.Sprintf(
		"%s: L1 recorded %d SVM SHUTDOWN exit(s), the first at guest rip %#x with CR3 %#x, outside the guest's %d MiB of RAM",
		vmm.TripleFaultMarker, len(ev.Exits), first.RIP, first.CR3, first.RAMPages/256)}
}

// CommandFault returns the L1 fault that a command's output and exit
// status show, StateInGuest's or else L1TripleFault's; nil if none.
func CommandFault(output string, exitCode int) *Fault {
	if f := StateInGuest(output, exitCode); f != nil {
		return f
	}
	return L1TripleFault(output, exitCode)
}

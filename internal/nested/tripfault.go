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

// EvidenceShell defines the sh function "nitrovm_l1_evidence RC" for L1
// scripts that run several commands in one session (the e2e harness).
// Called after each command with its exit status RC, it prints, when RC is
// not 0, what init prints after a failed command: a l1init.ShutdownMarker
// line per SVM SHUTDOWN exit recorded since the last call and a
// l1init.ModuleMarker line per L1 module; then it clears the trace buffer,
// so that each command's lines are its own.
const EvidenceShell = `nitrovm_l1_evidence() { t=` + l1init.TraceDir + `; [ -r "$t/trace" ] || return 0; ` +
	`if [ "$1" != 0 ]; then grep -F -e ' kvm_exit: ' -e ' ` + l1init.CR3Event + `: ' "$t/trace" | sed 's/^ */` + l1init.ShutdownMarker + ` /'; ` +
	`sed 's/^/` + l1init.ModuleMarker + ` /' ` + l1init.ModulesFile + `; fi; : >"$t/trace"; }`

// ModuleRange is an L1 kernel module's memory as /proc/modules gives it:
// [Start, End) is its base (the start of its text) plus its total size.
// Since Linux 6.4 a module's text, data and read-only data may be
// allocated apart, so the range is the text and maybe more, but always in
// L1's module area, where our guests (no modules) run no code.
type ModuleRange struct {
	Name       string
	Start, End uint64
}

// ShutdownExit is one recorded SVM SHUTDOWN exit.
type ShutdownExit struct {
	RIP uint64 // the guest rip at the exit
	// HasCR3 tells whether the CR3 probe recorded the exit's CR3 and the
	// VM's RAM (l1init.CR3Event).
	HasCR3   bool
	CR3      uint64 // the vCPU's CR3 at the exit
	RAMPages uint64 // the VM's memory slots in 4 KiB pages
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
				cr3, pages, ok := parseCR3(rest)
				n := len(ev.Exits)
				switch {
				case !ok || n == 0 || ev.Exits[n-1].HasCR3:
					ev.Malformed = append(ev.Malformed, strings.TrimSpace(line))
				default:
					ev.Exits[n-1].HasCR3, ev.Exits[n-1].CR3, ev.Exits[n-1].RAMPages = true, cr3, pages
				}
				continue
			}
			rip, shutdown, ok := parseShutdown(rest)
			switch {
			case !ok:
				ev.Malformed = append(ev.Malformed, strings.TrimSpace(line))
			case shutdown:
				ev.Exits = append(ev.Exits, ShutdownExit{RIP: rip})
			}
			continue
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
// shutdown rip 0xffffffff8102b3d3 info1 ...": the rip, whether the reason
// is shutdown, and whether the line could be read at all.
func parseShutdown(line string) (rip uint64, shutdown, ok bool) {
	_, event, found := strings.Cut(line, "kvm_exit: ")
	if !found {
		return 0, false, false
	}
	f := strings.Fields(event)
	var reason, ripText string
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "reason":
			reason = f[i+1]
		case "rip":
			ripText = f[i+1]
		}
	}
	hex, isHex := strings.CutPrefix(ripText, "0x")
	if reason == "" || !isHex {
		return 0, false, false
	}
	rip, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return 0, false, false
	}
	return rip, reason == "shutdown", true
}

// parseCR3 reads a CR3Event line, "... shutdown_cr3:
// (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x4a4000 pages=32768
// id=0": the CR3 and the VM's RAM in pages.
func parseCR3(line string) (cr3, pages uint64, ok bool) {
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
		}
	}
	return cr3, pages, haveCR3 && havePages
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
		return ModuleRange{Name: f[0], Start: base, End: base + size}, true
	}
	return ModuleRange{}, false
}

// module returns the module whose range holds addr.
func (ev L1Evidence) module(addr uint64) (ModuleRange, bool) {
	for _, m := range ev.Modules {
		if addr >= m.Start && addr < m.End {
			return m, true
		}
	}
	return ModuleRange{}, false
}

// L1TripleFault returns an l1-state-in-guest fault when a command that
// exited with exitCode failed, its output reports a guest triple fault
// (vmm.TripleFaultMarker), and L1 recorded SHUTDOWN exits (ParseL1Evidence)
// each of which shows L1's state in the vCPU: a guest rip in an L1 module
// (code our guests, which load no modules, cannot run), or a CR3 outside
// the guest's RAM (see ShutdownExit.outsideRAM; see also
// FaultL1StateInGuest). The evidence names the first exit. Else nil: no
// record, a malformed one, or any exit at a guest rip with the guest's own
// page tables leaves the failure the command's.
func L1TripleFault(output string, exitCode int) *Fault {
	if exitCode == 0 || !strings.Contains(output, vmm.TripleFaultMarker) {
		return nil
	}
	ev := ParseL1Evidence(output)
	if len(ev.Exits) == 0 || len(ev.Malformed) > 0 {
		return nil
	}
	for _, x := range ev.Exits {
		if _, ok := ev.module(x.RIP); !ok && !x.outsideRAM() {
			return nil
		}
	}
	first := ev.Exits[0]
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

package nested

import (
	"fmt"
	"strconv"
	"strings"

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
	`if [ "$1" != 0 ]; then grep -F ' kvm_exit: ' "$t/trace" | sed 's/^ */` + l1init.ShutdownMarker + ` /'; ` +
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

// L1Evidence is what a command's output holds of init's marked lines.
type L1Evidence struct {
	// Shutdowns are the guest rips of the recorded SVM SHUTDOWN exits.
	Shutdowns []uint64
	// Modules are L1's modules.
	Modules []ModuleRange
	// Malformed are shutdown lines whose reason or rip could not be read.
	Malformed []string
}

// ParseL1Evidence collects the l1init.ShutdownMarker and
// l1init.ModuleMarker lines of output. A kvm_exit line of another reason
// is skipped; a module line without a size or a non-zero base is skipped.
func ParseL1Evidence(output string) L1Evidence {
	var ev L1Evidence
	for _, line := range strings.Split(output, "\n") {
		if i := strings.Index(line, l1init.ShutdownMarker+" "); i >= 0 {
			rip, shutdown, ok := parseShutdown(line[i+len(l1init.ShutdownMarker)+1:])
			switch {
			case !ok:
				ev.Malformed = append(ev.Malformed, strings.TrimSpace(line))
			case shutdown:
				ev.Shutdowns = append(ev.Shutdowns, rip)
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
// every one of whose guest rips lies in an L1 module: code our guests
// cannot run, so the vCPU held L1's state (see FaultL1StateInGuest). The
// evidence names the first rip and its module. Else nil: no record, a
// malformed one, or any rip outside L1's modules (the guest kernel's own
// triple fault) leaves the failure the command's.
func L1TripleFault(output string, exitCode int) *Fault {
	if exitCode == 0 || !strings.Contains(output, vmm.TripleFaultMarker) {
		return nil
	}
	ev := ParseL1Evidence(output)
	if len(ev.Shutdowns) == 0 || len(ev.Malformed) > 0 {
		return nil
	}
	first, _ := ev.module(ev.Shutdowns[0])
	for _, rip := range ev.Shutdowns {
		if _, ok := ev.module(rip); !ok {
			return nil
		}
	}
	return &Fault{Class: FaultL1StateInGuest, Evidence: fmt.Sprintf(
		"%s: L1 recorded %d SVM SHUTDOWN exit(s), the first at guest rip %#x, inside L1's module %s [%#x, %#x)",
		vmm.TripleFaultMarker, len(ev.Shutdowns), ev.Shutdowns[0], first.Name, first.Start, first.End)}
}

// CommandFault returns the L1 fault that a command's output and exit
// status show, StateInGuest's or else L1TripleFault's; nil if none.
func CommandFault(output string, exitCode int) *Fault {
	if f := StateInGuest(output, exitCode); f != nil {
		return f
	}
	return L1TripleFault(output, exitCode)
}

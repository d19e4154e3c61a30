package nested

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/internal/nested/l1init"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// Lines as they appear in a failed command's output. guestShutdown is from
// a nested run of a guest rebooting with reboot=t (a triple fault in its
// kernel, at 0xffffffff8102b3d3); the module lines are that L1's
// /proc/modules.
const (
	tripleFault   = "nitrovm: guest panic: " + vmm.TripleFaultMarker + " on vCPU 0, rip 0xfff0"
	guestShutdown = l1init.ShutdownMarker + " nitrovm-157     [000] d..1.    12.349218: kvm_exit: vcpu 0 reason shutdown rip 0xffffffff8102b3d3 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x80000403 error_code 0x00000000"
	modKVMAMD     = l1init.ModuleMarker + " kvm_amd 147456 3 - Live 0xffffffffc0389000"
	modKVM        = l1init.ModuleMarker + " kvm 1372160 1 kvm_amd, Live 0xffffffffc0236000"
	modTainted    = l1init.ModuleMarker + " vsock 65536 3 vhost_vsock, Live 0xffffffffc03b1000 (E)"
)

// shutdownAt returns a recorded SHUTDOWN exit at rip.
func shutdownAt(rip string) string {
	return l1init.ShutdownMarker + " nitrovm-160     [001] d..1.    40.000001: kvm_exit: vcpu 1 reason shutdown rip " + rip + " info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"
}

// cr3Line returns a recorded CR3 probe line (l1init.CR3Event) as tracefs
// prints it, from a nested run of a guest rebooting with reboot=t.
func cr3Line(cr3, pages string) string {
	return l1init.ShutdownMarker + " nitrovm-166     [000] ...1.    14.327858: " + l1init.CR3Event + ": (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=" + cr3 + " pages=" + pages + " id=0"
}

func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestL1TripleFault(t *testing.T) {
	inKVMAMD := "0xffffffffc038a2f1" // kvm_amd's base + 0x12f1
	tests := []struct {
		name     string
		output   string
		code     int
		evidence string // "" for no fault
	}{
		{"rip in kvm_amd", lines(tripleFault, shutdownAt(inKVMAMD), modKVM, modKVMAMD), 3,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc038a2f1, inside L1's module kvm_amd [0xffffffffc0389000, 0xffffffffc03ad000)"},
		{"rip in another module", lines(tripleFault, shutdownAt("0xffffffffc0236010"), modKVMAMD, modKVM), 1,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc0236010, inside L1's module kvm [0xffffffffc0236000, 0xffffffffc0385000)"},
		{"rip at a module's base", lines(tripleFault, shutdownAt("0xffffffffc03b1000"), modTainted), 3,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc03b1000, inside L1's module vsock [0xffffffffc03b1000, 0xffffffffc03c1000)"},
		{"timed out", lines(tripleFault, shutdownAt(inKVMAMD), modKVMAMD), 143,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc038a2f1, inside L1's module kvm_amd [0xffffffffc0389000, 0xffffffffc03ad000)"},
		{"two exits in modules", lines(tripleFault, shutdownAt(inKVMAMD), shutdownAt("0xffffffffc0236010"), modKVMAMD, modKVM), 3,
			vmm.TripleFaultMarker + ": L1 recorded 2 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc038a2f1, inside L1's module kvm_amd [0xffffffffc0389000, 0xffffffffc03ad000)"},
		{"other exit reasons are skipped", lines(tripleFault, strings.Replace(guestShutdown, "reason shutdown", "reason npf", 1), shutdownAt(inKVMAMD), modKVMAMD), 3,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc038a2f1, inside L1's module kvm_amd [0xffffffffc0389000, 0xffffffffc03ad000)"},

		{"guest rip, CR3 outside the guest's RAM", lines(tripleFault, guestShutdown, cr3Line("0x100dc8000", "32768"), modKVMAMD), 3,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffff8102b3d3 with CR3 0x100dc8000, outside the guest's 128 MiB of RAM"},
		{"CR3 with PCID bits, outside", lines(tripleFault, guestShutdown, cr3Line("0x8000000008000005", "32768"), modKVMAMD), 3,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffff8102b3d3 with CR3 0x8000000008000005, outside the guest's 128 MiB of RAM"},
		{"CR3 in the 32-bit MMIO hole of a 4 GiB guest", lines(tripleFault, guestShutdown, cr3Line("0xd0000000", "1048576"), modKVMAMD), 3,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffff8102b3d3 with CR3 0xd0000000, outside the guest's 4096 MiB of RAM"},
		{"module rip and outside CR3", lines(tripleFault, shutdownAt(inKVMAMD), cr3Line("0x100dc8000", "32768"), guestShutdown, cr3Line("0x100dc8000", "32768"), modKVMAMD), 3,
			vmm.TripleFaultMarker + ": L1 recorded 2 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc038a2f1, inside L1's module kvm_amd [0xffffffffc0389000, 0xffffffffc03ad000)"},

		{"rip in the guest kernel", lines(tripleFault, guestShutdown, modKVMAMD, modKVM), 3, ""},
		{"guest rip, CR3 in the guest's RAM", lines(tripleFault, guestShutdown, cr3Line("0x4a4000", "32768"), modKVMAMD), 3, ""},
		{"CR3 at the last page of RAM", lines(tripleFault, guestShutdown, cr3Line("0x7fff000", "32768"), modKVMAMD), 3, ""},
		{"CR3 above 4 GiB in a 4 GiB guest's RAM", lines(tripleFault, guestShutdown, cr3Line("0x100000000", "1048576"), modKVMAMD), 3, ""},
		{"CR3 line without its exit", lines(tripleFault, cr3Line("0x100dc8000", "32768"), shutdownAt(inKVMAMD), modKVMAMD), 3, ""},
		{"two CR3 lines for one exit", lines(tripleFault, guestShutdown, cr3Line("0x100dc8000", "32768"), cr3Line("0x100dc8000", "32768"), modKVMAMD), 3, ""},
		{"CR3 line without pages", lines(tripleFault, guestShutdown, cr3Line("0x100dc8000", "0"), modKVMAMD), 3, ""},
		{"one exit outside, one inside", lines(tripleFault, guestShutdown, cr3Line("0x100dc8000", "32768"), guestShutdown, cr3Line("0x4a4000", "32768"), modKVMAMD), 3, ""},
		{"one rip in a module, one in the guest", lines(tripleFault, shutdownAt(inKVMAMD), guestShutdown, modKVMAMD, modKVM), 3, ""},
		{"rip just past a module", lines(tripleFault, shutdownAt("0xffffffffc03ad000"), modKVMAMD), 3, ""},
		{"no trace", lines(tripleFault, modKVMAMD, modKVM), 3, ""},
		{"no marked lines at all", lines(tripleFault), 3, ""},
		{"no module lines", lines(tripleFault, shutdownAt(inKVMAMD)), 3, ""},
		{"passing command", lines(tripleFault, shutdownAt(inKVMAMD), modKVMAMD), 0, ""},
		{"failure without a triple fault", lines("run-enclave: no heartbeat", shutdownAt(inKVMAMD), modKVMAMD), 1, ""},
		{"malformed rip", lines(tripleFault, shutdownAt(inKVMAMD), shutdownAt("0xfffffffg"), modKVMAMD), 3, ""},
		{"rip not hex", lines(tripleFault, shutdownAt("18446744072645452529"), modKVMAMD), 3, ""},
		{"no rip", lines(tripleFault, shutdownAt(inKVMAMD), l1init.ShutdownMarker+" nitrovm-1 [000] 1.0: kvm_exit: vcpu 0 reason shutdown", modKVMAMD), 3, ""},
		{"not a kvm_exit line", lines(tripleFault, shutdownAt(inKVMAMD), l1init.ShutdownMarker+" garbage", modKVMAMD), 3, ""},
		{"module address hidden", lines(tripleFault, shutdownAt(inKVMAMD), l1init.ModuleMarker+" kvm_amd 147456 3 - Live 0x0000000000000000"), 3, ""},
		{"module line malformed", lines(tripleFault, shutdownAt(inKVMAMD), l1init.ModuleMarker+" kvm_amd big 3 - Live 0xffffffffc0389000", l1init.ModuleMarker+" kvm_amd"), 3, ""},
		{"module range overflows", lines(tripleFault, shutdownAt("0xfffffffffffffff0"), l1init.ModuleMarker+" m 4096 0 - Live 0xfffffffffffffff8"), 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := L1TripleFault(tt.output, tt.code)
			if tt.evidence == "" {
				if f != nil {
					t.Errorf("got %v, want no fault", f)
				}
				return
			}
			if f == nil || f.Class != FaultL1StateInGuest || f.Evidence != tt.evidence {
				t.Errorf("got %v, want %s: %s", f, FaultL1StateInGuest, tt.evidence)
			}
		})
	}
}

// Lines of a false page fault, from a nested TestVsock run (2026-12-02):
// the guest shut down at io_serial_out's ret, right after its out,
// delivering a not-present instruction-fetch fault (error code 0x10), and
// the state dump's kernel map shows the text mapped there. In another
// run CR2 was the IDT's #DF entry (0xfffffe0000000080), which mapIDT
// maps.
const (
	pfShutdown = l1init.ShutdownMarker + " nitrovm-212     [000] d..1.     7.732867: kvm_exit: vcpu 0 reason shutdown rip 0xffffffff811d5600 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x80000b0e error_code 0x00000010"
	pfCR3      = l1init.ShutdownMarker + " nitrovm-212     [000] .....     7.733708: " + l1init.CR3Event + ": (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x1829000 pages=65536 id=0 cr2=0xffffffff811d5600"
	mapText    = `e2e: supervisor log /run/e2e-vsock/logs/i-0000000000000000-enc1.log: time=2026-12-02T10:49:33.859Z level=WARN msg="vm state" enclave=i-0000000000000000-enc1 part=vmm text="` + vmm.KernelMapPrefix + `0x1829000 va=0xffffffff81000000-0xffffffff81600000 pa=0x1000000 prot=r-x page=2M"`
	mapData    = `text="` + vmm.KernelMapPrefix + `0x1829000 va=0xffffffff81800000-0xffffffff81a00000 pa=0x1800000 prot=rw- page=2M"`
	mapIDT     = `text="` + vmm.KernelMapPrefix + `0x1829000 va=0xfffffe0000000000-0xfffffe0000001000 pa=0x18cb000 prot=r-- page=4K"`
	// A triple fault while delivering the local timer interrupt.
	timerShutdown = l1init.ShutdownMarker + " nitrovm-216     [000] d..1.    27.993382: kvm_exit: vcpu 1 reason shutdown rip 0xffffffff8103fe9e info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x800000ec error_code 0x00000000"
	idtCR3        = l1init.ShutdownMarker + " nitrovm-216     [000] .....    27.994162: " + l1init.CR3Event + ": (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x523000 pages=65536 id=1 cr2=0xfffffe0000000080"
	vcpuIDT       = `text="vcpu 0 gdt=0xfffffe0000001000/0x7f idt=0xfffffe0000000000/0xfff"`
	mapIDTProc    = `text="` + vmm.KernelMapPrefix + `0x523000 va=0xfffffe0000000000-0xfffffe0000001000 pa=0x199c000 prot=r-- page=4K"`
)

func TestL1TripleFaultFalsePageFault(t *testing.T) {
	edit := func(line, old, new string) string { return strings.Replace(line, old, new, 1) }
	tests := []struct {
		name   string
		output string
		class  string // "" for no fault
	}{
		{"fetch at mapped text", lines(tripleFault, pfShutdown, pfCR3, mapData, mapText, modKVMAMD), FaultL1FalsePageFault},
		{"data access at mapped data", lines(tripleFault, edit(pfShutdown, "error_code 0x00000010", "error_code 0x00000002"),
			edit(pfCR3, "cr2=0xffffffff811d5600", "cr2=0xffffffff81800040"), mapData, modKVMAMD), FaultL1FalsePageFault},
		{"CR3 with PCID bits", lines(tripleFault, pfShutdown, edit(pfCR3, "cr3=0x1829000", "cr3=0x1829001"), mapText), FaultL1FalsePageFault},
		{"module rip, then a false fault", lines(tripleFault, shutdownAt("0xffffffffc038a2f1"), pfShutdown, pfCR3, mapText, modKVMAMD), FaultL1StateInGuest},

		{"IDT read while delivering a double fault", lines(tripleFault, edit(pfShutdown, "rip 0xffffffff811d5600", "rip 0xffffffff811d55eb"),
			edit(pfCR3, "cr2=0xffffffff811d5600", "cr2=0xfffffe0000000080"), mapText, mapIDT), FaultL1FalsePageFault},
		{"fetch at non-executable data", lines(tripleFault, pfShutdown, edit(pfCR3, "cr2=0xffffffff811d5600", "cr2=0xffffffff81800040"), mapData), FaultL1FalsePageFault},
		{"address not mapped", lines(tripleFault, pfShutdown, edit(pfCR3, "cr2=0xffffffff811d5600", "cr2=0xffffffff81700000"), mapText, mapData), ""},
		{"map under another CR3", lines(tripleFault, pfShutdown, edit(pfCR3, "cr3=0x1829000", "cr3=0x2000000"), mapText), ""},
		{"no kernel map", lines(tripleFault, pfShutdown, pfCR3, modKVMAMD), ""},
		{"no CR2 (an older probe)", lines(tripleFault, pfShutdown, edit(pfCR3, " cr2=0xffffffff811d5600", ""), mapText), ""},
		{"no CR3 line", lines(tripleFault, pfShutdown, mapText), ""},
		{"protection fault, not a missing page", lines(tripleFault, edit(pfShutdown, "error_code 0x00000010", "error_code 0x00000011"), pfCR3, mapText), ""},
		{"delivering a double fault", lines(tripleFault, edit(pfShutdown, "intr_info 0x80000b0e", "intr_info 0x80000b08"), pfCR3, mapText), ""},
		{"no event being delivered", lines(tripleFault, edit(pfShutdown, "intr_info 0x80000b0e", "intr_info 0x00000b0e"), pfCR3, mapText), ""},
		{"a software interrupt 14", lines(tripleFault, edit(pfShutdown, "intr_info 0x80000b0e", "intr_info 0x8000040e"), pfCR3, mapText), ""},
		{"intr_info unreadable", lines(tripleFault, edit(pfShutdown, "intr_info 0x80000b0e", "intr_info zz"), pfCR3, mapText), ""},
		{"kernel map line reporting an error", lines(tripleFault, pfShutdown, pfCR3, `text="`+vmm.KernelMapPrefix+`0x1829000: page walk: entry at 0x70000ff8 for va 0xffffffff80000000: outside guest RAM"`), ""},
		{"kernel map malformed", lines(tripleFault, pfShutdown, pfCR3, `text="`+vmm.KernelMapPrefix+`0x1829000 va=0xffffffff81600000-0xffffffff81000000 pa=0x1000000 prot=r-x page=2M"`), ""},
		{"one false fault, one real", lines(tripleFault, pfShutdown, pfCR3, pfShutdown, edit(pfCR3, "cr2=0xffffffff811d5600", "cr2=0xffffffff81700000"), mapText), ""},
		{"passing command", lines(pfShutdown, pfCR3, mapText), ""},

		// Delivering the local timer interrupt (0xec), CR2 at the IDT's
		// #DF entry (a nested CI run, 2026-12-02): the IDT rule.
		{"interrupt delivery, CR2 in a present IDT", lines(tripleFault, timerShutdown, idtCR3, vcpuIDT, mapIDTProc), FaultL1FalsePageFault},
		{"interrupt delivery, no IDT line", lines(tripleFault, timerShutdown, idtCR3, mapIDTProc), ""},
		{"interrupt delivery, IDT not mapped", lines(tripleFault, timerShutdown, idtCR3, vcpuIDT, mapText), ""},
		{"interrupt delivery, CR2 outside the IDT", lines(tripleFault, timerShutdown, edit(idtCR3, "cr2=0xfffffe0000000080", "cr2=0xfffffe0000001080"), vcpuIDT, mapIDTProc), ""},
		{"a reset vCPU's IDT line", lines(tripleFault, timerShutdown, edit(idtCR3, "cr2=0xfffffe0000000080", "cr2=0x80"), `text="vcpu 1 gdt=0x0/0xffff idt=0x0/0xffff"`, mapIDTProc), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := 36
			if tt.name == "passing command" {
				code = 0
			}
			f := L1TripleFault(tt.output, code)
			switch {
			case tt.class == "" && f != nil:
				t.Errorf("got %v, want no fault", f)
			case tt.class != "" && (f == nil || f.Class != tt.class):
				t.Errorf("got %v, want class %s", f, tt.class)
			}
		})
	}
	f := L1TripleFault(lines(tripleFault, pfShutdown, pfCR3, mapText), 36)
	want := vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffff811d5600 delivering event 0x80000b0e (error code 0x10) with CR2 0xffffffff811d5600 under CR3 0x1829000, which the guest's page tables map present (0xffffffff81000000-0xffffffff81600000) as nitrovm read them after the fault"
	if f == nil || f.Evidence != want {
		t.Errorf("evidence: got %v, want %s", f, want)
	}
}

func TestParseL1Evidence(t *testing.T) {
	ev := ParseL1Evidence(lines("x", "  "+guestShutdown, shutdownAt("zz"), modKVMAMD, modTainted))
	if len(ev.Exits) != 1 || ev.Exits[0] != (ShutdownExit{RIP: 0xffffffff8102b3d3, HasIntInfo: true, IntInfo: 0x80000403}) {
		t.Errorf("exits: got %+v, want one at rip 0xffffffff8102b3d3 without a CR3", ev.Exits)
	}
	if len(ev.Malformed) != 1 || !strings.Contains(ev.Malformed[0], "rip zz") {
		t.Errorf("malformed: got %q, want the line with rip zz", ev.Malformed)
	}
	want := []ModuleRange{{"kvm_amd", AddrRange{0xffffffffc0389000, 0xffffffffc0389000 + 147456}}, {"vsock", AddrRange{0xffffffffc03b1000, 0xffffffffc03b1000 + 65536}}}
	if len(ev.Modules) != len(want) || ev.Modules[0] != want[0] || ev.Modules[1] != want[1] {
		t.Errorf("modules: got %+v, want %+v", ev.Modules, want)
	}
}

// TestCommandFault: the state-dump warning wins; a triple fault in an L1
// module is found without it.
func TestCommandFault(t *testing.T) {
	warn := "vcpu 0 WARNING cr3=0x101e64000 " + vmm.ForeignStateMarker
	if f := CommandFault(lines(warn, tripleFault, shutdownAt("0xffffffffc038a2f1"), modKVMAMD), 3); f == nil || f.Evidence != warn {
		t.Errorf("warning and triple fault: got %v, want the warning", f)
	}
	if f := CommandFault(lines(tripleFault, shutdownAt("0xffffffffc038a2f1"), modKVMAMD), 3); f == nil || !strings.Contains(f.Evidence, "kvm_amd") {
		t.Errorf("triple fault in kvm_amd: got %v, want a fault naming kvm_amd", f)
	}
	if f := CommandFault(lines(tripleFault, guestShutdown, modKVMAMD), 3); f != nil {
		t.Errorf("triple fault in the guest: got %v, want none", f)
	}
}

// TestEvidenceShell runs EvidenceShell's function on a fake trace buffer
// and module list: a failed command's lines are those init would print
// (L1TripleFault reads them), a passing one prints nothing, and the buffer
// is cleared either way.
func TestEvidenceShell(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	for _, grep := range []string{"grep", "sed"} {
		if _, err := exec.LookPath(grep); err != nil {
			t.Skipf("needs %s", grep)
		}
	}
	dir := t.TempDir()
	trace, modules := filepath.Join(dir, "trace"), filepath.Join(dir, "modules")
	fn := strings.NewReplacer(l1init.TraceDir, dir, l1init.ModulesFile, modules).Replace(EvidenceShell)
	event := "         nitrovm-160     [001] d..1.    40.000001: kvm_exit: vcpu 1 reason shutdown rip 0xffffffffc038a2f1 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"
	record := event + "\n"
	run := func(rc string) string {
		t.Helper()
		if err := os.WriteFile(trace, []byte("# tracer: nop\n#\n"+record), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", fn+"\nnitrovm_l1_shutdowns && echo recorded\nnitrovm_l1_evidence "+rc).CombinedOutput()
		if err != nil {
			t.Fatalf("sh: %v: %s", err, out)
		}
		if b, err := os.ReadFile(trace); err != nil || len(b) != 0 {
			t.Errorf("rc %s: trace buffer after: %q, %v; want it cleared", rc, b, err)
		}
		return string(out)
	}
	if err := os.WriteFile(modules, []byte("kvm_amd 147456 3 - Live 0xffffffffc0389000\nkvm 1372160 1 kvm_amd, Live 0xffffffffc0236000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := lines("recorded", shutdownAt("0xffffffffc038a2f1"), modKVMAMD, modKVM)
	if got := run("3"); got != want {
		t.Errorf("failed command: got\n%s\nwant\n%s", got, want)
	}
	if f := L1TripleFault(tripleFault+"\n"+run("3"), 3); f == nil {
		t.Errorf("L1TripleFault on the function's lines: got no fault, want one")
	}
	// A guest triple fault during a passing command is printed too.
	if got := run("0"); got != want {
		t.Errorf("passing command with a SHUTDOWN exit: got\n%s\nwant\n%s", got, want)
	}
	record = ""
	if got := run("0"); got != "" {
		t.Errorf("passing command, nothing recorded: got %q, want nothing", got)
	}
	want = lines(modKVMAMD, modKVM)
	if got := run("1"); got != want {
		t.Errorf("failed command, nothing recorded: got\n%s\nwant\n%s", got, want)
	}
}

// TestProvenTripleFault: the exit status does not matter to it, only the
// record; L1TripleFault needs a failed command as well.
func TestProvenTripleFault(t *testing.T) {
	out := lines(tripleFault, pfShutdown, pfCR3, mapText)
	if f := ProvenTripleFault(out); f == nil || f.Class != FaultL1FalsePageFault {
		t.Errorf("ProvenTripleFault: got %v, want %s", f, FaultL1FalsePageFault)
	}
	if f := L1TripleFault(out, 0); f != nil {
		t.Errorf("L1TripleFault of a passing command: got %v, want none", f)
	}
	if f := ProvenTripleFault(lines(tripleFault, guestShutdown, cr3Line("0x4a4000", "32768"))); f != nil {
		t.Errorf("the guest's own triple fault: got %v, want none", f)
	}
}

// FuzzL1TripleFault feeds arbitrary command output (which holds guest
// console text, so a guest can print marker-like lines) to the parser and
// the classifier: no panic, every exit's CR3 belongs to it, and a fault is
// only ever l1-state-in-guest or l1-false-page-fault, for a failed command
// that reports a triple fault.
func FuzzL1TripleFault(f *testing.F) {
	f.Add(lines(tripleFault, shutdownAt("0xffffffffc038a2f1"), modKVMAMD), 3)
	f.Add(lines(tripleFault, guestShutdown, cr3Line("0x100dc8000", "32768"), modKVM), 3)
	f.Add(lines(tripleFault, guestShutdown, cr3Line("0x4a4000", "0x8000"), cr3Line("x", "y")), 1)
	f.Add(lines(cr3Line("0x1", "18446744073709551615"), shutdownAt("0x0")), 0)
	f.Add(lines(tripleFault, pfShutdown, pfCR3, mapText, mapData), 36)
	f.Add(lines(tripleFault, timerShutdown, idtCR3, vcpuIDT, mapIDTProc), 36)
	f.Fuzz(func(t *testing.T, out string, code int) {
		ev := ParseL1Evidence(out)
		for _, x := range ev.Exits {
			if x.HasCR3 != (x.RAMPages != 0) {
				t.Fatalf("exit %+v: a CR3 record always has its RAM size", x)
			}
		}
		f := L1TripleFault(out, code)
		if f == nil {
			return
		}
		if (f.Class != FaultL1StateInGuest && f.Class != FaultL1FalsePageFault) || code == 0 || !strings.Contains(out, vmm.TripleFaultMarker) || len(ev.Exits) == 0 || len(ev.Malformed) != 0 {
			t.Fatalf("fault %+v for exit %d and evidence %+v", f, code, ev)
		}
	})
}

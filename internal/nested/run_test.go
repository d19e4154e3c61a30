package nested

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/vmm"
)

// fakeQEMU writes a shell script standing in for QEMU and counting its
// runs: it writes kernel to the L1 kernel console file (the second
// -serial), ticks to the tick file (the third), then runs script (stdout
// is init's console).
func fakeQEMU(t *testing.T, dir, kernel, ticks, script string) string {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("#!/bin/sh\nn=$(cat " + dir + "/count 2>/dev/null || echo 0)\necho $((n+1)) > " + dir + "/count\n")
	sb.WriteString("i=0; for a; do case $a in file:*) i=$((i+1)); eval f$i=${a#file:};; esac; done\n")
	sb.WriteString("printf '" + kernel + "' >\"$f1\"\nprintf '" + ticks + "' >\"$f2\"\n" + script + "\n")
	p := filepath.Join(dir, "qemu")
	if err := os.WriteFile(p, []byte(sb.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeL1 returns Options for a run in dir with a fake kernel and module
// tree, self standing in for nitrovm; QEMU is left to the caller.
func fakeL1(t *testing.T, dir, self string) Options {
	t.Helper()
	mods := filepath.Join(dir, "modules")
	for p, data := range map[string]string{
		filepath.Join(mods, "modules.dep"):      "kernel/kvm.ko.xz:\n",
		filepath.Join(mods, "kernel/kvm.ko.xz"): "module",
		filepath.Join(dir, "vmlinuz"):           "kernel",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Options{
		Nitrovm: self, Command: []string{"true"},
		Kernel: filepath.Join(dir, "vmlinuz"), ModulesDir: mods, Modules: []string{"kvm"},
		Busybox: "none", Timeout: time.Minute,
	}
}

// selfAsNitrovm returns the test binary, which stands in for the static
// nitrovm binary, or skips the test.
func selfAsNitrovm(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	self, err := os.Executable()
	if err != nil || checkStatic(self) != nil {
		t.Skip("the test binary is not a static ELF to stand in for nitrovm")
	}
	return self
}

// TestRunStopped: a run that outlives its Timeout and one whose context is
// cancelled end with errors that say which.
func TestRunStopped(t *testing.T) {
	self := selfAsNitrovm(t)
	stall := errors.New("watchdog")
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
		want    string
	}{
		{"timeout", 300 * time.Millisecond, false, "nested: timed out after 300ms (last output: nested: L1 ready)"},
		{"cancelled", time.Minute, true, "nested: stopped: watchdog (last output: nested: L1 ready)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := fakeL1(t, dir, self)
			opts.Timeout = tt.timeout
			opts.QEMU = fakeQEMU(t, dir, "", "", "echo 'nested: L1 ready'; exec sleep 60")
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			if tt.cancel {
				time.AfterFunc(300*time.Millisecond, func() { cancel(stall) })
			}
			_, err := Run(ctx, opts)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestRunWithFakeQEMU: L1 is booted once, never again; its exit status,
// kernel console and faults are reported as they happened.
func TestRunWithFakeQEMU(t *testing.T) {
	self := selfAsNitrovm(t)
	const ready = `echo 'nested: L1 ready'`
	tests := []struct {
		name           string
		kernel, ticks  string
		script         string
		want           int
		wantErr        bool
		class, evident string
	}{
		{"exit status", "", "tick 1\n", ready + `; printf 'hello\r\nNITROVM-NESTED-EXIT 5\r\n'`, 5, false, "", ""},
		{"oops but finished", "[ 9.1] Oops: int3: 0000 [#1] PREEMPT SMP\n", "", ready + `; echo 'NITROVM-NESTED-EXIT 0'`, 0, false, FaultL1Panic, "[ 9.1] Oops: int3: 0000 [#1] PREEMPT SMP"},
		{"panic before ready", "Kernel panic - not syncing: VFS\n", "", "", 0, true, FaultL1Panic, "Kernel panic - not syncing: VFS"},
		{"init died", "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200\n", "", ready, 0, true, "", ""},
		{"reset", "", "tick 1\n", ready, 0, true, FaultL1Panic, "L1 reset before init reported the exit status (no kernel message)"},
		{"frozen", "", "tick 1 uptime 3.00\n", ready + "; exec sleep 30", 0, true, FaultL1Freeze, `(last tick: "tick 1 uptime 3.00")`},
		{"no ticks is no freeze", "", "", ready + "; sleep 3; echo 'NITROVM-NESTED-EXIT 0'", 0, false, "", ""},
		{"qemu fails", "", "", "echo 'qemu: bad option' >&2; exit 1", 0, true, "", ""},
		{"state in guest", "", "tick 1\n", ready + `; echo "vcpu 0 WARNING cr3=0x101e64000 ` + vmm.ForeignStateMarker + `"; echo 'NITROVM-NESTED-EXIT 1'`, 1, false, FaultL1StateInGuest, "cr3=0x101e64000 " + vmm.ForeignStateMarker},
		{"state in a passing command", "", "tick 1\n", ready + `; echo "vcpu 0 WARNING cr3=0x101e64000 ` + vmm.ForeignStateMarker + `"; echo 'NITROVM-NESTED-EXIT 0'`, 0, false, "", ""},
		{"triple fault in an L1 module", "", "tick 1\n", ready + `; echo '` + tripleFault + `'; echo '` + shutdownAt("0xffffffffc038a2f1") + `'; echo '` + modKVMAMD + `'; echo 'NITROVM-NESTED-EXIT 3'`, 3, false, FaultL1StateInGuest, "rip 0xffffffffc038a2f1, inside L1's module kvm_amd"},
		{"triple fault in the guest kernel", "", "tick 1\n", ready + `; echo '` + tripleFault + `'; echo '` + guestShutdown + `'; echo '` + modKVMAMD + `'; echo 'NITROVM-NESTED-EXIT 3'`, 3, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := fakeL1(t, dir, self)
			opts.FreezeAfter = 2 * time.Second
			opts.QEMU = fakeQEMU(t, dir, tt.kernel, tt.ticks, tt.script)
			var kernel strings.Builder
			opts.KernelOutput = &kernel
			res, err := Run(context.Background(), opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && res.ExitCode != tt.want {
				t.Errorf("exit code: got %d, want %d", res.ExitCode, tt.want)
			}
			var f *Fault
			if err != nil && errors.As(err, &f) != (res.Fault != nil) {
				t.Errorf("error %v does not wrap the fault %v", err, res.Fault)
			}
			switch {
			case tt.class == "" && res.Fault != nil:
				t.Errorf("fault: got %v, want none", res.Fault)
			case tt.class != "" && res.Fault == nil:
				t.Errorf("fault: got none, want %s", tt.class)
			case tt.class != "" && (res.Fault.Class != tt.class || !strings.Contains(res.Fault.Evidence, tt.evident)):
				t.Errorf("fault: got %v, want %s with evidence containing %q", res.Fault, tt.class, tt.evident)
			}
			if res.KernelLog != tt.kernel || kernel.String() != tt.kernel {
				t.Errorf("kernel log: got %q, observer %q, want %q", res.KernelLog, kernel.String(), tt.kernel)
			}
			if strings.Contains(res.Output, "Oops") || strings.Contains(res.Output, "Kernel panic") {
				t.Errorf("kernel console leaked into the command's output: %q", res.Output)
			}
			runs, _ := os.ReadFile(filepath.Join(dir, "count"))
			if got := strings.TrimSpace(string(runs)); got != "1" {
				t.Errorf("QEMU runs: got %s, want 1 (no reruns inside Run)", got)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	// warn is nitrovm's dump line for a vCPU holding L1's state, as its
	// log prints it (internal/vmm, foreignState).
	warn := `time=2026-12-02T04:00:00Z level=WARN msg="vm state" text="vcpu 0 WARNING cr3=0x101e64000 ` + vmm.ForeignStateMarker + ` (nested: ...)"`
	out := "@@E2E-BEGIN b\n" + warn + "\nrun-enclave: no heartbeat\n"
	tests := []struct {
		name            string
		o               observed
		class, evidence string
	}{
		{"clean", observed{kernelLog: "[ 1.0] kvm_amd: Nested Virtualization enabled\n", exited: true}, "", ""},
		{"warning only", observed{kernelLog: "WARNING: CPU: 1 PID: 7 at arch/x86/kvm/x86.c:1 foo\n"}, "", ""},
		{"oops", observed{kernelLog: "a\n[ 5.2] Oops: int3: 0000 [#1]\nKernel panic - not syncing: Fatal exception\n"}, FaultL1Panic, "[ 5.2] Oops: int3: 0000 [#1]"},
		{"bug", observed{kernelLog: "  BUG: kernel NULL pointer dereference, address: 0000000000000008  \n"}, FaultL1Panic, "BUG: kernel NULL pointer dereference, address: 0000000000000008"},
		{"soft lockup", observed{kernelLog: "watchdog: BUG: soft lockup - CPU#0 stuck for 22s!\n"}, FaultL1Panic, "watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"},
		{"gp", observed{kernelLog: "general protection fault, probably for non-canonical address\n"}, FaultL1Panic, "general protection fault, probably for non-canonical address"},
		{"init died is ours", observed{kernelLog: "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000002\n", reset: true}, "", ""},
		{"oops then init died", observed{kernelLog: "Oops: 0002 [#1]\nKernel panic - not syncing: Attempted to kill init!\n"}, FaultL1Panic, "Oops: 0002 [#1]"},
		{"frozen", observed{frozen: "no tick for 90s"}, FaultL1Freeze, "no tick for 90s"},
		{"a CPU's timer stalled", observed{kernelLog: "[ 22.97] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n[ 22.99] rcu: \tPossible timer handling issue on cpu=1 timer-softirq=4\n", output: "x", exitCode: 143, exited: true},
			FaultL1Freeze, "L1's kernel: [ 22.99] rcu: \tPossible timer handling issue on cpu=1 timer-softirq=4"},
		{"an RCU stall without the timer line", observed{kernelLog: "[ 22.97] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n"}, "", ""},
		{"oops wins over a timer stall", observed{kernelLog: "Oops: 0000\nrcu: \tPossible timer handling issue on cpu=1\n"}, FaultL1Panic, "Oops: 0000"},
		{"oops wins over freeze", observed{kernelLog: "Oops: 0000\n", frozen: "no tick"}, FaultL1Panic, "Oops: 0000"},
		{"reset", observed{reset: true}, FaultL1Panic, "L1 reset before init reported the exit status (no kernel message)"},
		{"state in guest", observed{output: out, exitCode: 1, exited: true}, FaultL1StateInGuest, warn},
		{"state in guest, timed out", observed{output: out, exitCode: 143, exited: true}, FaultL1StateInGuest, warn},
		{"marker in a passing run", observed{output: out, exited: true}, "", ""},
		{"failure without the marker", observed{output: "run-enclave: no heartbeat\n", exitCode: 1, exited: true}, "", ""},
		{"marker without an exit status", observed{output: out}, "", ""},
		{"oops wins over state in guest", observed{kernelLog: "Oops: 0000\n", output: out, exitCode: 1, exited: true}, FaultL1Panic, "Oops: 0000"},
		{"freeze wins over state in guest", observed{frozen: "no tick", output: out, exitCode: 1, exited: true}, FaultL1Freeze, "no tick"},
		{"triple fault in an L1 module", observed{output: lines(tripleFault, shutdownAt("0xffffffffc038a2f1"), modKVMAMD), exitCode: 3, exited: true}, FaultL1StateInGuest,
			vmm.TripleFaultMarker + ": L1 recorded 1 SVM SHUTDOWN exit(s), the first at guest rip 0xffffffffc038a2f1, inside L1's module kvm_amd [0xffffffffc0389000, 0xffffffffc03ad000)"},
		{"triple fault in the guest kernel", observed{output: lines(tripleFault, guestShutdown, modKVMAMD), exitCode: 3, exited: true}, "", ""},
		{"init died with the marker is ours", observed{kernelLog: "Kernel panic - not syncing: Attempted to kill init!\n", output: out, exitCode: 1, exited: true}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := classify(tt.o)
			if tt.class == "" {
				if f != nil {
					t.Errorf("got %v, want no fault", f)
				}
				return
			}
			if f == nil || f.Class != tt.class || f.Evidence != tt.evidence {
				t.Errorf("got %v, want %s: %s", f, tt.class, tt.evidence)
			}
		})
	}
}

func TestStateInGuest(t *testing.T) {
	line := "vcpu 1 WARNING cr3=0x100c8e000 " + vmm.ForeignStateMarker
	tests := []struct {
		name   string
		output string
		code   int
		want   bool
	}{
		{"failed with the marker", "a\n  " + line + "  \nb\n", 1, true},
		{"passed with the marker", line + "\n", 0, false},
		{"failed without the marker", "vcpu 1 WARNING something else\n", 1, false},
		{"failed, cr3 note reworded", "vcpu 1 cr3=0x100c8e000 is outside guest RAM\n", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := StateInGuest(tt.output, tt.code)
			if got := f != nil; got != tt.want {
				t.Fatalf("got %v, want a fault: %v", f, tt.want)
			}
			if f != nil && (f.Class != FaultL1StateInGuest || f.Evidence != line) {
				t.Errorf("got %v, want %s: %s", f, FaultL1StateInGuest, line)
			}
		})
	}
}

func TestRunOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no nitrovm", Options{Command: []string{"true"}}},
		{"too little memory", Options{Nitrovm: "/bin/sh", MemoryMiB: 16}},
		{"nitrovm missing", Options{Nitrovm: "/nonexistent/nitrovm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.opts); err == nil {
				t.Errorf("got nil error, want one")
			}
		})
	}
}

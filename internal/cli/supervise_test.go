package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"

	"github.com/nitrovm/nitrovm/internal/enclave/enclavetest"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// TestMain lets this test binary act as "nitrovm supervise DIR" with a fake
// VM launcher, so the lifecycle commands run their full detached flow.
func TestMain(m *testing.M) {
	enclavetest.SuperviseIfAsked("supervise")
	if filepath.Base(os.Args[0]) == "nitro-cli" {
		// Invoked through a nitro-cli symlink by TestLifecycleScript.
		os.Exit(Run(context.Background(), os.Args, Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
	}
	os.Exit(m.Run())
}

// lifecycleScriptSetup returns sh, a directory holding nitro-cli (this
// test binary, see TestMain) and two fake EIFs A and B in it, for running
// e2e-lifecycle.sh against fake VMs; it skips the test without sh.
func lifecycleScriptSetup(t *testing.T) (sh, bin, a, b string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	bin = t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "nitro-cli")); err != nil {
		t.Fatal(err)
	}
	a = enclavetest.WriteEIF(t, bin, "a.eif", "fake.console=booted_a", eif.ArchX86_64, 'A')
	b = enclavetest.WriteEIF(t, bin, "b.eif", "fake.console=booted_b", eif.ArchX86_64, 'B')
	return sh, bin, a, b
}

// TestLifecycleScript runs the nested end-to-end script
// (internal/enclave/testdata/e2e-lifecycle.sh) against fake VMs, so the
// script itself is known to be right before it runs in the nested L1.
func TestLifecycleScript(t *testing.T) {
	sh, bin, a, b := lifecycleScriptSetup(t)
	state, err := os.MkdirTemp("", "nvme2e")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	cmd := exec.Command(sh, filepath.Join("..", "enclave", "testdata", "e2e-lifecycle.sh"), a, b)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "NITROVM_STATE_DIR="+state, "MEM=64", "TMPDIR="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS: lifecycle e2e") {
		t.Errorf("e2e-lifecycle.sh: got %v, output:\n%s", err, out)
	}
}

// TestLifecycleScriptFailure runs the nested end-to-end script with
// enclaves that fail to start, as nested guests do at times, and checks
// that the script fails at once saying why:
//   - a first enclave that never sends its heartbeat, with HEARTBEAT=1:
//     run-enclave gives up after 1 s and the failure path prints the VM
//     state dump its supervisor wrote to its log, whole (every vCPU's
//     lines), which is how a hang in the nested L1 reaches the e2e
//     harness;
//   - concurrent calls whose guest panics: each call's failure is
//     reported (under set -e a failed call once ended its subshell before
//     it wrote its status, and the script waited for it until its limit).
func TestLifecycleScriptFailure(t *testing.T) {
	sh, bin, a, b := lifecycleScriptSetup(t)
	silent := enclavetest.WriteEIF(t, bin, "silent.eif", "fake.heartbeat=never", eif.ArchX86_64, 'S')
	panics := enclavetest.WriteEIF(t, bin, "panics.eif", "fake.panic", eif.ArchX86_64, 'P')
	tests := []struct {
		name string
		args []string // the script's A and B
		env  []string
		want []string
	}{
		{"no heartbeat", []string{silent, b}, []string{"HEARTBEAT=1"}, []string{
			"no heartbeat within 1s",
			"FAIL: run A",
			`msg="` + vmm.DumpBeginsMsg + `"`,
			`text="vcpu 0 fake: no registers"`,
			`text="vcpu 1 fake: no registers"`,
			`msg="` + vmm.DumpEndsMsg + `"`,
		}},
		{"concurrent calls fail", []string{a, b}, []string{"CONCURRENT=2", "CONCURRENT_EIF=" + panics, "HEARTBEAT=30"}, []string{
			"the enclave exited before sending its heartbeat (guest panic: Kernel panic - not syncing: fake)",
			"FAIL: concurrent run 1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, err := os.MkdirTemp("", "nvme2e")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(state)
			// Far below HEARTBEAT + 90 s, when the script gives up waiting.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sh, append([]string{filepath.Join("..", "enclave", "testdata", "e2e-lifecycle.sh")}, tt.args...)...)
			cmd.Env = append(os.Environ(), append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "NITROVM_STATE_DIR=" + state, "MEM=64", "TMPDIR=" + bin}, tt.env...)...)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("e2e-lifecycle.sh did not end within 60 s; output:\n%s", out)
			}
			if err == nil {
				t.Fatalf("e2e-lifecycle.sh passed; output:\n%s", out)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("e2e-lifecycle.sh output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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

// TestLifecycleScript runs the nested end-to-end script
// (internal/enclave/testdata/e2e-lifecycle.sh) against fake VMs, so the
// script itself is known to be right before it runs in the nested L1.
func TestLifecycleScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	bin := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "nitro-cli")); err != nil {
		t.Fatal(err)
	}
	state, err := os.MkdirTemp("", "nvme2e")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	a := enclavetest.WriteEIF(t, bin, "a.eif", "fake.console=booted_a", eif.ArchX86_64, 'A')
	b := enclavetest.WriteEIF(t, bin, "b.eif", "fake.console=booted_b", eif.ArchX86_64, 'B')
	cmd := exec.Command(sh, filepath.Join("..", "enclave", "testdata", "e2e-lifecycle.sh"), a, b)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "NITROVM_STATE_DIR="+state, "MEM=64", "TMPDIR="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS: lifecycle e2e") {
		t.Errorf("e2e-lifecycle.sh: got %v, output:\n%s", err, out)
	}
}

// TestLifecycleScriptFailure runs the nested end-to-end script with a first
// enclave that never sends its heartbeat and HEARTBEAT=1: run-enclave must
// give up after 1 s, and the script's failure path must print the VM state
// dump its supervisor wrote to its log, whole (every vCPU's lines), which
// is how a hang in the nested L1 reaches the e2e harness.
func TestLifecycleScriptFailure(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	bin := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "nitro-cli")); err != nil {
		t.Fatal(err)
	}
	state, err := os.MkdirTemp("", "nvme2e")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	a := enclavetest.WriteEIF(t, bin, "a.eif", "fake.heartbeat=never", eif.ArchX86_64, 'A')
	b := enclavetest.WriteEIF(t, bin, "b.eif", "fake.console=booted_b", eif.ArchX86_64, 'B')
	cmd := exec.Command(sh, filepath.Join("..", "enclave", "testdata", "e2e-lifecycle.sh"), a, b)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "NITROVM_STATE_DIR="+state, "MEM=64", "TMPDIR="+bin, "HEARTBEAT=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("e2e-lifecycle.sh passed with an enclave that sends no heartbeat; output:\n%s", out)
	}
	text := string(out)
	for _, want := range []string{
		"no heartbeat within 1s",
		"FAIL: run A",
		`msg="` + vmm.DumpBeginsMsg + `"`,
		`text="vcpu 0 fake: no registers"`,
		`text="vcpu 1 fake: no registers"`,
		`msg="` + vmm.DumpEndsMsg + `"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("e2e-lifecycle.sh output lacks %q:\n%s", want, text)
		}
	}
}

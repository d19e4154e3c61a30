package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/cli"
	"github.com/nitrovm/nitrovm/internal/enclave/enclavetest"
)

// mainTestEnv selects what this test binary is when a test runs it as a
// child process: "main" is nitrovm's own main, "fake-vm" the same run with
// the fake enclave launcher (supervisors then run no VM). Either way the
// signal handling is run's.
const mainTestEnv = "NITROVM_MAIN_TEST"

func TestMain(m *testing.M) {
	switch os.Getenv(mainTestEnv) {
	case "main":
		main()
	case "fake-vm":
		os.Exit(run(os.Args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Launcher: enclavetest.Launcher{}}))
	}
	os.Exit(m.Run())
}

// self returns a command running this test binary as nitrovm (mode as in
// mainTestEnv) with args.
func self(t *testing.T, mode string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = "nitrovm"
	cmd.Env = append(append(os.Environ(), mainTestEnv+"="+mode), env...)
	return cmd
}

// TestSupervisorSignals sends real SIGTERM and SIGINT to the detached
// supervisor of an enclave started with run-enclave (fake VM): the enclave
// is terminated, its state is removed and the supervisor exits.
func TestSupervisorSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			state, err := os.MkdirTemp("", "nvmsig") // short: socket paths are limited
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(state)
			env := []string{"NITROVM_STATE_DIR=" + state, "NITROVM_CPU_POOL=1-4"}
			p := enclavetest.WriteEIF(t, t.TempDir(), "sig.eif", "", eif.ArchX86_64, 's')
			var stderr bytes.Buffer
			cmd := self(t, "fake-vm", env, "run-enclave", "--eif-path", p, "--memory", "64", "--cpu-count", "1")
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("run-enclave: %v\n%s", err, stderr.String())
			}
			var rec struct {
				EnclaveID string
				ProcessID int
			}
			if err := json.Unmarshal(out, &rec); err != nil || rec.ProcessID <= 0 {
				t.Fatalf("run-enclave output %q: %v", out, err)
			}
			dirs, _ := filepath.Glob(filepath.Join(state, "*", "record.json"))
			if len(dirs) != 1 {
				t.Fatalf("state before the signal: %v, want one enclave record", dirs)
			}
			if err := syscall.Kill(rec.ProcessID, sig); err != nil {
				t.Fatalf("kill %d: %v", rec.ProcessID, err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for running(rec.ProcessID) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if running(rec.ProcessID) {
				t.Fatalf("supervisor %d still runs 30 s after %v", rec.ProcessID, sig)
			}
			if dirs, _ := filepath.Glob(filepath.Join(state, "*", "record.json")); len(dirs) != 0 {
				t.Errorf("enclave state left after %v: %v", sig, dirs)
			}
			events, err := os.ReadFile(filepath.Join(state, "events.log"))
			if err != nil || !strings.Contains(string(events), `"Event":"terminated"`) || !strings.Contains(string(events), rec.EnclaveID) || !strings.Contains(string(events), "supervisor interrupted") {
				t.Errorf("events.log: got %q, %v; want %s terminated, supervisor interrupted", events, err, rec.EnclaveID)
			}
			out, err = self(t, "fake-vm", env, "describe-enclaves").Output()
			if err != nil || string(out) != "[]\n" {
				t.Errorf("describe-enclaves after %v: got %q, %v; want []", sig, out, err)
			}
		})
	}
}

// running reports whether pid exists and is not a zombie (a detached
// supervisor's parent, init, reaps it in its own time).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

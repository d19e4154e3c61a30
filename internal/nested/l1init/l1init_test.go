package l1init

import (
	"errors"
	"io"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/enclave"
)

// TestReapUntil: while waiting for the command, init reaps the orphans it
// inherits (here as a child subreaper, as PID 1 would), so none is left a
// zombie, and still returns the command's own status.
func TestReapUntil(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	// The subshell leaves an orphan "sleep", which exits while the command
	// still runs.
	cmd := exec.Command("sh", "-c", "(sleep 0.1 &); sleep 1; exit 7")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ws, err := reapUntil(cmd.Process.Pid)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 7 {
		t.Fatalf("got status %v, %v; want exit 7", ws, err)
	}
	var rest syscall.WaitStatus
	if pid, err := syscall.Wait4(-1, &rest, syscall.WNOHANG, nil); !errors.Is(err, syscall.ECHILD) {
		t.Errorf("after the command: wait4 got pid %d, %v; want ECHILD (no zombie, no child left)", pid, err)
	}
}

// TestCommandCPUs checks the affinity the command gets: every online CPU
// but CPU 0, and none to set when CPU 0 is all there is.
func TestCommandCPUs(t *testing.T) {
	set := func(cpus ...int) unix.CPUSet {
		var s unix.CPUSet
		for _, c := range cpus {
			s.Set(c)
		}
		return s
	}
	tests := []struct {
		name   string
		online unix.CPUSet
		want   unix.CPUSet
		ok     bool
	}{
		{"three CPUs", set(0, 1, 2), set(1, 2), true},
		{"two CPUs", set(0, 1), set(1), true},
		{"CPU 0 only", set(0), set(), false},
		{"CPU 0 already excluded", set(2, 3), set(2, 3), true},
	}
	for _, tt := range tests {
		got, ok := commandCPUs(tt.online)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: commandCPUs = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestStartCommandAvoidsCPU0 starts a command the way init does and reads
// its affinity: CPU 0 must not be in it, and the starting thread's own
// affinity must be whole again afterwards.
func TestStartCommandAvoidsCPU0(t *testing.T) {
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil || online.Count() < 2 || !online.IsSet(0) {
		t.Skipf("needs CPU 0 and another CPU (affinity %v, %v)", online, err)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	var out strings.Builder
	cmd := exec.Command("sh", "-c", "grep Cpus_allowed_list /proc/self/status")
	cmd.Stdout = &out
	if err := startCommand(cmd, true, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	list := strings.TrimSpace(strings.TrimPrefix(out.String(), "Cpus_allowed_list:"))
	if list == "" || strings.HasPrefix(list, "0") {
		t.Errorf("command's Cpus_allowed_list = %q, want CPU 0 left out", list)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil || !after.IsSet(0) {
		t.Errorf("a thread's affinity after startCommand: %v, %v; want CPU 0 in it", after, err)
	}
}

// TestVCPUEnv checks the variable that keeps only the vCPU threads off
// CPU 0.
func TestVCPUEnv(t *testing.T) {
	set := []string{"A=1", enclave.VCPUCPUsEnv + "=3"}
	if got := vcpuEnv(set, io.Discard); !slices.Equal(got, set) {
		t.Errorf("vcpuEnv(%q) = %q, want it unchanged", set, got)
	}
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil || online.Count() < 2 || !online.IsSet(0) {
		t.Skipf("needs CPU 0 and another CPU (affinity %v, %v)", online, err)
	}
	got := vcpuEnv([]string{"A=1"}, io.Discard)
	if len(got) != 2 || got[0] != "A=1" || !strings.HasPrefix(got[1], enclave.VCPUCPUsEnv+"=") {
		t.Fatalf("vcpuEnv = %q, want A=1 and %s", got, enclave.VCPUCPUsEnv)
	}
	cpus, err := enclave.VCPUCPUs(func(string) string { return strings.TrimPrefix(got[1], enclave.VCPUCPUsEnv+"=") })
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) != online.Count()-1 || slices.Contains(cpus, 0) {
		t.Errorf("%s names %v, want every online CPU but 0 (%d online)", enclave.VCPUCPUsEnv, cpus, online.Count())
	}
	for _, c := range cpus {
		if !online.IsSet(c) {
			t.Errorf("CPU %d is not online", c)
		}
	}
}

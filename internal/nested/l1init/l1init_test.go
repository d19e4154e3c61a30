package l1init

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
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

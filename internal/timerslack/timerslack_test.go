package timerslack

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func threadSlack(t *testing.T) int {
	t.Helper()
	v, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSetThreadAndRestore(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadSlack(t)
	restore, err := SetThread(3 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := threadSlack(t); got != 3_000_000 {
		t.Errorf("slack after SetThread = %d ns, want 3000000", got)
	}
	restore()
	if got := threadSlack(t); got != before {
		t.Errorf("slack after restore = %d ns, want %d", got, before)
	}
}

// TestForkedProcessInherits checks what the supervisor relies on: a
// process started from a thread with a slack keeps it across execve.
func TestForkedProcessInherits(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restore, err := SetThread(VMM)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cat, "/proc/self/timerslack_ns").Output()
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.FormatInt(VMM.Nanoseconds(), 10) {
		t.Errorf("child's timer slack = %s ns, want %d", got, VMM.Nanoseconds())
	}
}

func TestSetProcess(t *testing.T) {
	// A child process, so that the test binary's own threads keep theirs.
	if os.Getenv("TIMERSLACK_CHILD") == "1" {
		err := SetProcess(VMM)
		if err != nil && !errors.Is(err, os.ErrPermission) {
			t.Fatal(err)
		}
		ents, err2 := os.ReadDir("/proc/self/task")
		if err2 != nil {
			t.Fatal(err2)
		}
		for _, e := range ents {
			b, rerr := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "timerslack_ns"))
			if rerr != nil {
				continue // the thread ended
			}
			got := strings.TrimSpace(string(b))
			if err == nil && got != strconv.FormatInt(VMM.Nanoseconds(), 10) {
				t.Errorf("thread %s: slack %s ns after SetProcess", e.Name(), got)
			}
		}
		if err != nil && !strings.Contains(err.Error(), "CAP_SYS_NICE") {
			t.Errorf("error %q does not name CAP_SYS_NICE", err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSetProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "TIMERSLACK_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestSetThreadsErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		want  string
	}{
		{"no such directory", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, "no such file"},
		{"thread file not writable", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "7", "timerslack_ns"), 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "timer slack of thread 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := setThreads(tc.setup(t), time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("setThreads error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

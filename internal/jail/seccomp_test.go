package jail

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv makes this test binary a child that installs the filter and
// then does what the variable's value says (see TestMain).
const childEnv = "NITROVM_JAIL_TEST_CHILD"

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childEnv); mode {
	case "":
	case "contain":
		os.Exit(containChild())
	case "cgroup":
		os.Exit(cgroupChild())
	default:
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child installs the filter and exercises it: "allowed" uses the runtime,
// sockets and files; "forbidden" calls sysinfo(2), outside the allowlist.
func child(mode string) int {
	action := ActionKill
	if mode == "errno" {
		action = ActionErrno
	}
	// A listener opened before the filter, like the supervisor's.
	dir := os.Getenv("TMPDIR_CHILD")
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		fmt.Println(err)
		return 2
	}
	if err := InstallSeccomp(action); err != nil {
		fmt.Println(err)
		return 2
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Seccomp:") || strings.HasPrefix(l, "NoNewPrivs:") {
			fmt.Println(strings.Join(strings.Fields(l), " "))
		}
	}
	switch mode {
	case "allowed":
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		c, err := net.Dial("unix", filepath.Join(dir, "s"))
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		b := make([]byte, 2)
		if _, err := c.Read(b); err != nil {
			fmt.Println("read:", err)
			return 1
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), b, 0o600); err != nil {
			fmt.Println("write:", err)
			return 1
		}
		time.Sleep(10 * time.Millisecond)
		fmt.Println("ok")
	case "forbidden", "errno":
		var si unix.Sysinfo_t
		err := unix.Sysinfo(&si)
		fmt.Println("sysinfo:", err)
		// A thread may set its own affinity (pid 0), not another's.
		runtime.LockOSThread()
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			fmt.Println("sched_getaffinity:", err)
			return 1
		}
		fmt.Println("setaffinity self:", unix.SchedSetaffinity(0, &set))
		fmt.Println("setaffinity by pid:", unix.SchedSetaffinity(unix.Getpid(), &set))
	}
	return 0
}

func runChild(t *testing.T, mode string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "TMPDIR_CHILD="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSeccompAllowsTheRuntime(t *testing.T) {
	out, err := runChild(t, "allowed")
	if err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("got %v, output:\n%s", err, out)
	}
	for _, want := range []string{"Seccomp: 2", "NoNewPrivs: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the child's status:\n%s", want, out)
		}
	}
}

func TestSeccompKillsForbiddenSyscall(t *testing.T) {
	out, err := runChild(t, "forbidden")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("got %v, want the child killed; output:\n%s", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS || strings.Contains(out, "sysinfo:") {
		t.Fatalf("got %v, want death by SIGSYS before sysinfo returned; output:\n%s", ws, out)
	}
}

func TestSeccompErrno(t *testing.T) {
	out, err := runChild(t, "errno")
	if err != nil || !strings.Contains(out, "sysinfo: operation not permitted") {
		t.Fatalf("got %v, want sysinfo to fail with EPERM; output:\n%s", err, out)
	}
	for _, want := range []string{"setaffinity self: <nil>", "setaffinity by pid: operation not permitted"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the child's output:\n%s", want, out)
		}
	}
}

func TestParseAction(t *testing.T) {
	tests := []struct {
		in      string
		want    Action
		wantErr bool
	}{
		{"", ActionKill, false},
		{"kill", ActionKill, false},
		{"errno", ActionErrno, false},
		{"log", ActionLog, false},
		{"off", ActionOff, false},
		{"allow", "", true},
		{"KILL", "", true},
	}
	for _, tt := range tests {
		got, err := ParseAction(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseAction(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestPolicyAssembles(t *testing.T) {
	p := Policy(ActionKill.seccompAction())
	insts, err := p.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's BPF_MAXINSNS.
	if len(insts) > 4096 {
		t.Errorf("%d instructions, more than the kernel accepts", len(insts))
	}
	t.Logf("%d syscalls allowed, %d ioctl requests, %d BPF instructions", AllowedSyscalls(), len(Ioctls()), len(insts))
}

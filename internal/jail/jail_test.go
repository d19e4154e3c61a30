package jail

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// containChild is the "contain" child of TestMain: the supervisor's whole
// sequence (Confine, SetLimits, DropPrivileges, InstallSeccomp), then a
// report of what the process can see and its status lines.
func containChild() int {
	dir := os.Getenv("TMPDIR_CHILD")
	how, err := Confine(filepath.Join(dir, "root"), []Bind{
		{Path: filepath.Join(dir, "keep")},
		{Path: "/proc", ReadOnly: true},
	})
	if err != nil {
		println("confine:", err.Error())
		return 2
	}
	println("root:", how)
	if err := SetLimits(64); err != nil {
		println(err.Error())
		return 2
	}
	if err := DropPrivileges(Identity{UID: 65534, GID: 65534}); err != nil {
		println(err.Error())
		return 2
	}
	if err := InstallSeccomp(ActionKill); err != nil {
		println(err.Error())
		return 2
	}
	if _, err := os.Stat("/etc/passwd"); err == nil {
		println("visible: /etc/passwd")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keep", "f")); err == nil {
		println("kept:", string(b))
	}
	if err := os.WriteFile("/x", nil, 0o600); err == nil {
		println("writable: /")
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:", "Seccomp:"} {
			if strings.HasPrefix(l, k) {
				println(strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return 0
}

// TestContain runs the supervisor's containment sequence in a child in
// new mount, IPC and UTS namespaces (root only, as the supervisor's).
func TestContain(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if err := os.MkdirAll(filepath.Join(dir, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep", "f"), []byte("yes"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=contain", "TMPDIR_CHILD="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("namespaces not allowed here: %v", err)
		}
		t.Fatalf("got %v, output:\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
	for _, want := range []string{
		"kept: yes", "Uid: 65534 65534 65534 65534", "Gid: 65534 65534 65534 65534",
		"CapInh: 0000000000000000", "CapPrm: 0000000000000000", "CapEff: 0000000000000000",
		"CapBnd: 0000000000000000", "CapAmb: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the child's report", want)
		}
	}
	for _, bad := range []string{"visible: /etc/passwd", "writable: /"} {
		if strings.Contains(out, bad) {
			t.Errorf("child reports %q", bad)
		}
	}
}

func TestResolveIdentity(t *testing.T) {
	tests := []struct {
		user, group string
		want        Identity
		wantErr     string
	}{
		{"1000", "1001", Identity{1000, 1001}, ""},
		{"1000", "", Identity{1000, 1000}, ""},
		{"0", "", Identity{}, "must not be root"},
		{"1000", "0", Identity{}, "must not be root"},
		{"no-such-user-xyz", "", Identity{}, "no-such-user-xyz"},
		{"1000", "no-such-group-xyz", Identity{}, "no-such-group-xyz"},
		{"-1", "", Identity{}, "negative"},
	}
	for _, tt := range tests {
		got, err := ResolveIdentity(tt.user, tt.group)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ResolveIdentity(%q, %q) = %v, %v; want error with %q", tt.user, tt.group, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveIdentity(%q, %q) = %v, %v; want %v", tt.user, tt.group, got, err, tt.want)
		}
	}
	if id, err := ResolveIdentity("", ""); err != nil || id.UID == 0 || id.GID == 0 {
		t.Errorf("default identity: %v, %v", id, err)
	}
}

func TestJoinCgroupErrors(t *testing.T) {
	err := JoinCgroup(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "--cgroup") {
		t.Errorf("got %v, want an error naming --cgroup", err)
	}
}

// cgroupChild is the "cgroup" child of TestMain: it mounts a cgroup v2
// hierarchy in its own mount namespace, joins a new cgroup there, reports
// /proc/self/cgroup's v2 line, and leaves and removes the cgroup.
func cgroupChild() int {
	dir := os.Getenv("TMPDIR_CHILD")
	if err := syscall.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		println("mount cgroup2:", err.Error())
		return 3
	}
	cg := filepath.Join(dir, "nitrovm-jail-test")
	if err := os.Mkdir(cg, 0o755); err != nil {
		println(err.Error())
		return 2
	}
	defer os.Remove(cg)
	err := JoinCgroup(cg)
	b, _ := os.ReadFile("/proc/self/cgroup")
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0)
	if err != nil {
		println("join:", err.Error())
		return 2
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "0::") {
			println("cgroup", l)
		}
	}
	return 0
}

// TestJoinCgroup moves a child into a cgroup v2 directory (root only; a
// private cgroup2 mount, so it works beside a v1 hierarchy too).
func TestJoinCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=cgroup", "TMPDIR_CHILD="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Skipf("no cgroup2 here: %s", b)
	}
	if err != nil || !strings.Contains(string(b), "cgroup 0::/nitrovm-jail-test") {
		t.Fatalf("got %v, output:\n%s", err, b)
	}
}

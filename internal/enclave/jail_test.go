package enclave_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/enclave"
	"github.com/nitrovm/nitrovm/internal/enclave/enclavetest"
)

// statusLines returns the named fields of /proc/PID/status, whitespace
// normalized ("Seccomp: 2").
func statusLines(t *testing.T, pid int, keys ...string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range keys {
			if strings.HasPrefix(l, k+":") {
				out[k] = strings.Join(strings.Fields(l), " ")
			}
		}
	}
	return out
}

// TestSupervisorIsContained runs an enclave (fake VM, real supervisor
// process) and checks the supervisor's /proc/PID/status: seccomp filter
// mode, no_new_privs, no capabilities, and as root the unprivileged user
// and its own mount namespace.
func TestSupervisorIsContained(t *testing.T) {
	for _, uds := range []string{"", "beside"} {
		t.Run("uds="+uds, func(t *testing.T) { testSupervisorIsContained(t, uds) })
	}
}

// testSupervisorIsContained runs the check with the default hybrid vsock
// socket, or with one beside the state directory ("beside"), whose
// directory the supervisor's mount namespace then shows too, with the
// real state directory in it.
func testSupervisorIsContained(t *testing.T, uds string) {
	m := newManager(t)
	p := enclavetest.WriteEIF(t, t.TempDir(), "j.eif", "console=ttyS0", eif.ArchX86_64, 'j')
	if uds == "beside" {
		uds = m.Store.Dir + ".sock"
		t.Cleanup(func() { os.Remove(uds) })
	}
	r, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1, VsockUDS: uds})
	if err != nil {
		t.Fatal(err)
	}
	st := statusLines(t, r.PID, "Seccomp", "NoNewPrivs", "CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd", "Uid")
	t.Logf("supervisor %d: %v", r.PID, st)
	want := []string{"Seccomp: 2", "NoNewPrivs: 1", "CapEff: 0000000000000000", "CapPrm: 0000000000000000",
		"CapInh: 0000000000000000", "CapAmb: 0000000000000000"}
	if os.Geteuid() == 0 {
		want = append(want, "CapBnd: 0000000000000000", "Uid: 65534 65534 65534 65534")
		self, _ := os.Readlink("/proc/self/ns/mnt")
		sup, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", r.PID))
		if err != nil || sup == self {
			t.Errorf("supervisor mount namespace %q (%v), same as the test's %q", sup, err, self)
		}
		fi, err := os.Stat(filepath.Join(m.Store.Dir, r.ID))
		if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 || fi.Mode().Perm() != 0o700 {
			t.Errorf("enclave directory: %v, %v; want 0700 owned by 65534", fi, err)
		}
	}
	for _, w := range want {
		k, _, _ := strings.Cut(w, ":")
		if st[k] != w {
			t.Errorf("got %q, want %q", st[k], w)
		}
	}
	// The contained supervisor still serves its control socket, and
	// terminating frees everything.
	if _, err := m.Terminate(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(m.Store.Dir); hasEnclaveDir(ents) {
		t.Errorf("state directory after terminate: %v", names(ents))
	}
}

// TestSeccompProbeKillsSupervisor makes the supervisor call a syscall
// outside the allowlist (enclave.ProbeEnv): the kernel kills it, the
// starter reports the failure and nothing stays reserved.
func TestSeccompProbeKillsSupervisor(t *testing.T) {
	m := newManager(t)
	p := enclavetest.WriteEIF(t, t.TempDir(), "p.eif", "console=ttyS0", eif.ArchX86_64, 'p')
	t.Setenv(enclave.ProbeEnv, "1")
	_, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1})
	if err == nil || !strings.Contains(err.Error(), "exited without reporting") {
		t.Fatalf("got %v, want the supervisor gone without reporting", err)
	}
	ents, _ := os.ReadDir(m.Store.Dir)
	if hasEnclaveDir(ents) {
		t.Errorf("state directory after the supervisor died: %v", names(ents))
	}
	logs, _ := filepath.Glob(filepath.Join(m.Store.Dir, "logs", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("supervisor logs: %v", logs)
	}
	b, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(b), "calling sysinfo(2)") || strings.Contains(string(b), "sysinfo(2) returned") {
		t.Errorf("supervisor log: want the probe announced and never returning:\n%s", b)
	}
	// With errno, the same probe fails with EPERM and the enclave runs.
	r, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1, Jail: enclave.Jail{SeccompAction: "errno"}})
	if err != nil {
		t.Fatalf("with errno: %v", err)
	}
	b, _ = os.ReadFile(filepath.Join(m.Store.Dir, "logs", r.ID+".log"))
	if !strings.Contains(string(b), "operation not permitted") {
		t.Errorf("with errno: supervisor log:\n%s", b)
	}
}

// TestDeadSupervisorCleanedUp kills a running enclave's supervisor (as
// seccomp would, SIGSYS): the next command scanning the state directory
// frees the enclave and records its death.
func TestDeadSupervisorCleanedUp(t *testing.T) {
	m := newManager(t)
	p := enclavetest.WriteEIF(t, t.TempDir(), "d.eif", "console=ttyS0", eif.ArchX86_64, 'd')
	r, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1, CID: 90})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(r.PID, syscall.SIGSYS); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := m.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("enclave still listed after its supervisor died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ents, _ := os.ReadDir(m.Store.Dir); hasEnclaveDir(ents) {
		t.Errorf("state directory: %v", names(ents))
	}
	events, _ := os.ReadFile(filepath.Join(m.Store.Dir, "events.log"))
	if !strings.Contains(string(events), `"Event":"died"`) {
		t.Errorf("events.log: %s; want a died event", events)
	}
	if _, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1, CID: 90}); err != nil {
		t.Errorf("reuse CID 90: %v", err)
	}
}

func hasEnclaveDir(ents []os.DirEntry) bool {
	for _, e := range ents {
		if e.IsDir() && strings.Contains(e.Name(), "-enc") {
			return true
		}
	}
	return false
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

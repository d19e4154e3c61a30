//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLifecycle runs internal/enclave/testdata/e2e-lifecycle.sh in one L1
// session: two enclaves from different EIFs at once (distinct CIDs and IDs,
// describe-enclaves with their measurements), console on the debug one and
// E44 on the other, terminate by name and --all, then concurrent
// run-enclave calls that must not collide. All as "nitro-cli" (a symlink to
// nitrovm). Two concurrent boots here keep the nested run short and steady
// (four or eight real boots at once under QEMU's emulation have hung L1 for
// minutes at times); the collision-freedom of eight concurrent calls is
// covered without VMs by internal/cli's TestLifecycleScript, and eight real
// ones pass when run by hand: CONCURRENT=8 in e2e-lifecycle.sh.
func TestLifecycle(t *testing.T) {
	e := setup(t)
	out := filepath.Join(e.tmp, "lifecycle")
	cmd := exec.Command("sh", "internal/enclave/testdata/e2e-eifs.sh", e.nitrovm, e.guestKernel, out)
	cmd.Dir = e.root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2e-eifs.sh: %v\n%s", err, b)
	}
	s := e.newSession(t)
	script := s.file(filepath.Join(e.root, "internal/enclave/testdata/e2e-lifecycle.sh"))
	a := s.file(filepath.Join(out, "a.eif"))
	b := s.file(filepath.Join(out, "b.eif"))
	// The script's run-enclave calls give up after 90 s without a
	// heartbeat (its HEARTBEAT); a failure then prints the VM state
	// dumps, well before this limit.
	lc := s.boot("lifecycle", 6*time.Minute, "env", "CONCURRENT=2", "MEM=128", "HEARTBEAT=90", "sh", script, a, b)
	s.run()
	lc.wantExit(t, 0)
	if !strings.Contains(lc.output, "PASS: lifecycle e2e") {
		t.Errorf("lifecycle: got no PASS line; output:\n%s", lc.output)
	}
}

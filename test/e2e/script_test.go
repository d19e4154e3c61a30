//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/nested"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// TestSessionScriptDumps runs a session's script on this machine, without
// L1 (busybox sh, as L1's init runs it), with commands that append VM
// state dumps to a supervisor log the way a run-enclave supervisor does:
// a failed command's output must get the dumps its run added to the log,
// whole (vCPU lines and the WARNING line), and nothing older; a passing
// command's output gets none; and the WARNING line makes the session an
// l1-state-in-guest fault.
func TestSessionScriptDumps(t *testing.T) {
	// scripts/e2e.sh wants a result in its log from every test.
	(&testEnv{attempt: 1}).record(t)
	sh, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	// The script looks for logs under /run, /tmp and /root.
	dir, err := os.MkdirTemp("/tmp", "e2e-script-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logDir := filepath.Join(dir, "state", "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(logDir, "i-0000000000000000-enc1.log")
	dump := func(cause string, lines ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "time=T level=WARN msg=%q enclave=e part=vmm cause=%q vcpus=1\n", vmm.DumpBeginsMsg, cause)
		for _, l := range lines {
			fmt.Fprintf(&b, "time=T level=WARN msg=\"vm state\" enclave=e part=vmm text=%q\n", l)
		}
		fmt.Fprintf(&b, "time=T level=WARN msg=%q enclave=e part=vmm cause=%q\n", vmm.DumpEndsMsg, cause)
		return b.String()
	}
	old := "time=T level=INFO msg=\"heartbeat received\"\n" + dump("old", "vcpu 0 mp_state=halted OLD")
	if err := os.WriteFile(log, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	warning := "vcpu 0 WARNING cr3=0x10433e000 " + vmm.ForeignStateMarker
	newDump := dump("no heartbeat within 20s", "vcpu 0 mp_state=runnable rip=0x1", warning, "vcpu 0 last 1 of 9 exits")
	appendTo := func(text string) string {
		return fmt.Sprintf("printf '%%s' %s >>%s", shellQuote(text), shellQuote(log))
	}

	s := &session{t: t, files: map[string]string{}}
	passed := s.boot("passed", 10*time.Second, "sh", "-c", appendTo(dump("SIGUSR1", "vcpu 0 PASSED"))+" && echo done")
	failed := s.boot("failed", 10*time.Second, "sh", "-c", appendTo("time=T level=INFO msg=\"launch\"\n"+newDump)+" && echo 'Waiting on enclave to boot failed' && exit 36")
	// L1's state in a guest ends the session after the failed command.
	after := s.boot("after", 10*time.Second, "echo", "AFTER")
	cmd := exec.Command(sh, "sh", "-c", s.script())
	cmd.Env = append(os.Environ(), "E2E_LOG_ROOTS="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	passed.parse(string(out))
	failed.parse(string(out))

	passed.wantExit(t, 0)
	if strings.Contains(passed.output, "e2e: supervisor log") {
		t.Errorf("passed: dumps printed for a passing command:\n%s", passed.output)
	}
	failed.wantExit(t, 36)
	prefix := "e2e: supervisor log " + log + ": "
	for _, want := range strings.Split(strings.TrimSpace(newDump), "\n") {
		if !strings.Contains(failed.output, prefix+want+"\n") && !strings.HasSuffix(failed.output, prefix+want) {
			t.Errorf("failed: no line %q; output:\n%s", prefix+want, failed.output)
		}
	}
	for _, unwanted := range []string{"OLD", "PASSED", `msg="launch"`} {
		if strings.Contains(failed.output, unwanted) {
			t.Errorf("failed: %q is not from a dump of this command's run; output:\n%s", unwanted, failed.output)
		}
	}
	if after.parse(string(out)); after.ran || strings.Contains(string(out), "AFTER") {
		t.Errorf("after: ran after a command that showed L1's state in a guest; output:\n%s", out)
	}
	if !strings.Contains(failed.output, "e2e: failed failed with L1's state in a guest vCPU: the session ends here") {
		t.Errorf("failed: no line saying the session ends; output:\n%s", failed.output)
	}
	f := s.commandFault(string(out))
	if f == nil || f.Class != nested.FaultL1StateInGuest || !strings.HasPrefix(f.Evidence, "failed: ") || !strings.Contains(f.Evidence, warning) {
		t.Errorf("commandFault: got %+v, want the failed command's WARNING line", f)
	}
}

// TestSessionScriptQuickFailures checks the dump rule for quick failures:
// the second failed command in a row gets every VM's state dumped
// (SIGUSR1), however quickly it failed, and only the second of a run; a
// passing command in between starts the count again.
func TestSessionScriptQuickFailures(t *testing.T) {
	(&testEnv{attempt: 1}).record(t)
	sh, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	const msg = "e2e: the second failed command in a row"
	s := &session{t: t, files: map[string]string{}}
	steps := []struct {
		name, cmd string
		dumped    bool
	}{
		{"fail1", "exit 1", false},
		{"pass1", "true", false},
		{"fail2", "exit 2", false},
		{"fail3", "exit 3", true},
		{"fail4", "exit 4", false},
	}
	var runs []*bootRun
	for _, st := range steps {
		runs = append(runs, s.boot(st.name, 10*time.Second, "sh", "-c", st.cmd))
	}
	cmd := exec.Command(sh, "sh", "-c", s.script())
	cmd.Env = append(os.Environ(), "E2E_LOG_ROOTS="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	for i, st := range steps {
		r := runs[i]
		r.parse(string(out))
		if !r.ran {
			t.Fatalf("%s: did not run; output:\n%s", st.name, out)
		}
		if got := strings.Contains(r.output, msg); got != st.dumped {
			t.Errorf("%s: dump line printed = %v, want %v; output:\n%s", st.name, got, st.dumped, r.output)
		}
	}
}

// TestFailLines checks that a failed command's FAIL lines are repeated
// after its output, and that nothing is added when there are none.
func TestFailLines(t *testing.T) {
	(&testEnv{attempt: 1}).record(t)
	for _, c := range []struct{ name, output, want string }{
		{"none", "== step\nok\n", ""},
		{"one", "== step\nFAIL: concurrent run 2\n== events.log\nNITROVM-L1-MODULE kvm\n",
			"\nthe command's FAIL lines again:\nFAIL: concurrent run 2"},
		{"two", "FAIL: a\nx FAIL: not at the start\nFAIL: b", "\nthe command's FAIL lines again:\nFAIL: a\nFAIL: b"},
	} {
		if got := failLines(c.output); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

//go:build e2e

// Package e2e holds nitrovm's end-to-end tests: they boot real Linux guests
// (the enclave kernel from scripts/kernel/build-guest.sh with
// guest/testinit as /init) under nitrovm, inside the nested L1 VM of package
// nested because this machine's KVM cannot run Linux guests.
//
// Run them with scripts/e2e.sh, which installs and builds what they need.
// Booting L1 costs about 10 s, so a test collects its guest boots in a
// Session and runs them all in one L1:
//
//	e := setup(t)
//	s := e.newSession(t)
//	eif := s.file(e.testEIF(t, e.guestKernel, "sysinfo"))
//	b := s.boot("two-cpus", 120*time.Second, "nitrovm", "boot", "--eif-path", eif, "--cpu-count", "2")
//	s.run()
//	b.wantExit(t, 0)
//	b.want(t, "cpus", "2")
//
// # Reruns
//
// Nothing here reruns a command or a test because it failed. The one
// exception is a session whose L1 itself failed, as package nested
// classifies it (its kernel oopsed or panicked on its own console, or it
// froze: see nested.Fault), or in which a command failed with nitrovm's
// state-dump warning that a guest vCPU holds L1's state, or with a guest
// triple fault that L1 recorded at a rip inside its own modules or with a
// CR3 outside guest RAM (nested.CommandFault): that session is run again from a fresh L1,
// with one "e2e: RERUN" line giving the class and the evidence. Reruns are
// capped for the whole run ($NITROVM_E2E_MAX_RERUNS, default 4, counted in
// the log below); past the cap the test fails. Every test appends its
// attempts to $NITROVM_E2E_LOG (JSON lines, package e2elog), from which
// scripts/e2e.sh prints its table.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/e2elog"
	"github.com/nitrovm/nitrovm/internal/nested"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// heartbeatFlag goes on every run-enclave of a real guest here. Guests
// send their heartbeat 7-12 s (L1 time) after the start, about 25 s with
// two booting at once; without the flag the supervisor waits 180 s
// (enclave.DefaultHeartbeatTimeout) before it gives up and dumps the VM's
// state, which in a script of several steps outlasted the command's limit
// (the harness's kill then left no diagnosis). Every command's limit
// leaves room for 90 s, the dump and the steps around it.
const heartbeatFlag = "--heartbeat-timeout 90"

// awsCmdline is the kernel command line of AWS's enclave images.
const awsCmdline = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"

// testEnv is what the tests need from the outside, found or built once per
// test function.
type testEnv struct {
	root        string // repository root
	nitrovm     string // static nitrovm binary
	testinit    string // static guest/testinit binary
	guestKernel string // bzImage from scripts/kernel/build-guest.sh
	stockKernel string // Debian's cloud vmlinuz (also the L1 kernel)
	tmp         string
	// attempt counts this test's L1 sessions that count as attempts: 1 +
	// the reruns so far.
	attempt int
}

// setup finds or builds the binaries and kernels. It skips the test when
// QEMU or the kernels are unavailable, unless NITROVM_E2E_REQUIRE=1 (set by
// scripts/e2e.sh), when it fails instead.
func setup(t *testing.T) *testEnv {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	e := &testEnv{root: filepath.Join(filepath.Dir(file), "..", ".."), tmp: t.TempDir(), attempt: 1}
	e.record(t)
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("NITROVM_E2E_REQUIRE") == "1" {
			t.Fatalf("%s (NITROVM_E2E_REQUIRE=1)", msg)
		}
		t.Skipf("%s; run scripts/e2e.sh to install and build everything", msg)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		unavailable("qemu-system-x86_64 not installed")
	}
	out, err := exec.Command("bash", filepath.Join(e.root, "scripts/kernel/build-guest.sh"), "--cached").Output()
	if err != nil {
		unavailable("guest kernel not built (scripts/kernel/build-guest.sh): %v", err)
	}
	e.guestKernel = strings.TrimSpace(string(out))
	out, err = exec.Command("bash", filepath.Join(e.root, "scripts/kernel/l1-kernel.sh")).Output()
	if err != nil {
		unavailable("L1 kernel missing (scripts/kernel/l1-kernel.sh): %v", err)
	}
	e.stockKernel = strings.Split(strings.TrimSpace(string(out)), "\n")[0]

	e.nitrovm = os.Getenv("NITROVM_BIN")
	if e.nitrovm == "" {
		e.nitrovm = e.goBuild(t, "./cmd/nitrovm", "nitrovm")
	}
	e.testinit = e.goBuild(t, "./guest/testinit", "testinit")
	return e
}

// record appends the test's final result to $NITROVM_E2E_LOG when the test
// ends.
func (e *testEnv) record(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() {
		path := os.Getenv("NITROVM_E2E_LOG")
		if path == "" {
			return
		}
		r := e2elog.Record{Test: t.Name(), Attempt: e.attempt, Result: e2elog.Pass, Seconds: time.Since(start).Seconds()}
		switch {
		case t.Failed():
			r.Result = e2elog.Fail
		case t.Skipped():
			r.Result = e2elog.Skip
		}
		if err := e2elog.Append(path, r); err != nil {
			t.Errorf("e2e log: %v", err)
		}
	})
}

// rerunsLeft returns how many L1 session reruns the run may still use:
// $NITROVM_E2E_MAX_RERUNS (default e2elog.DefaultMaxReruns) minus those in
// $NITROVM_E2E_LOG, or, without a log, minus this test's own.
func (e *testEnv) rerunsLeft(t *testing.T) (left, max int) {
	t.Helper()
	max = e2elog.DefaultMaxReruns
	if v := os.Getenv("NITROVM_E2E_MAX_RERUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("NITROVM_E2E_MAX_RERUNS=%q: want a number >= 0", v)
		}
		max = n
	}
	used := e.attempt - 1
	if path := os.Getenv("NITROVM_E2E_LOG"); path != "" {
		recs, err := e2elog.ReadFile(path)
		if err != nil {
			t.Fatalf("e2e log: %v", err)
		}
		used = e2elog.Reruns(recs)
	}
	return max - used, max
}

// goBuild builds a static binary of pkg into the test's temp dir.
func (e *testEnv) goBuild(t *testing.T, pkg, name string) string {
	t.Helper()
	out := filepath.Join(e.tmp, name)
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// demoEIF builds demo/hello into an image tagged tag (demo/mkimage, docker
// save format) and an EIF named name from it with build-enclave, the
// tests' guest kernel and guest/init, plus args; env is added to
// build-enclave's environment. It returns the EIF's path.
func (e *testEnv) demoEIF(t *testing.T, name, tag string, env []string, args ...string) string {
	t.Helper()
	hello := e.goBuild(t, "./demo/hello", "hello-app")
	mkimage := e.goBuild(t, "./demo/mkimage", "mkimage")
	init := e.goBuild(t, "./guest/init", "init")
	tarPath := filepath.Join(e.tmp, name+".tar")
	if b, err := exec.Command(mkimage, "-binary", hello, "-output", tarPath, "-tag", tag).CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	eifPath := filepath.Join(e.tmp, name+".eif")
	build := exec.Command(e.nitrovm, append([]string{"build-enclave", "--docker-uri", tag, "--image-tar", tarPath,
		"--kernel", e.guestKernel, "--init", init, "--output-file", eifPath}, args...)...)
	build.Env = append(os.Environ(), env...)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("nitrovm build-enclave %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return eifPath
}

// measureEIF returns the measurements of the EIF at path.
func measureEIF(t *testing.T, path string) *eif.Measurements {
	t.Helper()
	f, err := eif.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := f.Measure()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ramdisk returns a cpio archive with testinit as /init.
func (e *testEnv) ramdisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(e.tmp, "testinit.cpio")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	var buf bytes.Buffer
	err := nested.WriteCPIO(&buf, []nested.Entry{
		{Name: "/init", HostPath: e.testinit, Mode: 0o755},
		{Name: "/dev", Dir: true}, {Name: "/proc", Dir: true}, {Name: "/sys", Dir: true}, {Name: "/tmp", Dir: true},
	})
	if err != nil {
		t.Fatalf("ramdisk: %v", err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testEIF builds an EIF with kernel, AWS's cmdline plus
// "nitrovm.test=<tests>", and the testinit ramdisk, with nitrovm build-eif.
func (e *testEnv) testEIF(t *testing.T, kernel, tests string) string {
	t.Helper()
	out := filepath.Join(e.tmp, fmt.Sprintf("test-%s-%s.eif", filepath.Base(kernel), strings.ReplaceAll(tests, ",", "_")))
	cmd := exec.Command(e.nitrovm, "build-eif", "--kernel", kernel,
		"--cmdline", awsCmdline+" nitrovm.test="+tests, "--ramdisk", e.ramdisk(t), "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nitrovm build-eif: %v\n%s", err, b)
	}
	return out
}

// session is one L1 boot running a batch of commands.
type session struct {
	e      *testEnv
	t      *testing.T
	files  map[string]string // L1 path -> host path
	boots  []*bootRun
	cpus   int
	onCPU0 bool // nested.Options.CommandOnCPU0
	// wholeCommandOffCPU0 keeps the whole command off CPU 0, not only the
	// vCPU threads (nested.Options.OnlyVCPUsOffCPU0 false).
	wholeCommandOffCPU0 bool
	output              string
}

// bootRun is one command run in a session, usually a nitrovm boot, and
// what the guest reported.
type bootRun struct {
	name    string
	timeout time.Duration
	args    []string
	ran     bool
	// exit is the command's exit status (143 when timed out in L1).
	exit int
	// seconds is the command's wall time in L1.
	seconds float64
	// output is everything printed between the command's start and end.
	output string
	// report holds the guest's "NITROVM-TEST key=value" lines.
	report map[string]string
	// checks maps a testinit check to "ok" or "fail err=...".
	checks map[string]string
	// failures is testinit's "done failures=N", -1 if it never got there.
	failures int
}

// newSession returns an empty session of an L1 with nested.DefaultCPUs
// vCPUs (CPU 0 for L1, the others for the guests), or
// $NITROVM_E2E_L1_CPUS; NITROVM_E2E_L1_CPU0=1 lets the guests run on CPU
// 0 too (nested.Options.CommandOnCPU0), to measure QEMU's IGNNE race.
// Only the guests' vCPU threads stay off CPU 0
// (nested.Options.OnlyVCPUsOffCPU0): the supervisors' device threads may
// use it, so that two guests busy on the other CPUs do not starve them
// (docs/nested.md); NITROVM_E2E_COMMAND_OFF_CPU0=1 keeps the whole
// command off it, as before.
func (e *testEnv) newSession(t *testing.T) *session {
	t.Helper()
	cpus := nested.DefaultCPUs
	if v := os.Getenv("NITROVM_E2E_L1_CPUS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("NITROVM_E2E_L1_CPUS=%q: want a number >= 1", v)
		}
		cpus = n
	}
	return &session{e: e, t: t, files: map[string]string{}, cpus: cpus, onCPU0: os.Getenv("NITROVM_E2E_L1_CPU0") == "1",
		wholeCommandOffCPU0: os.Getenv("NITROVM_E2E_COMMAND_OFF_CPU0") == "1"}
}

// file makes a host file available in L1 and returns its L1 path.
func (s *session) file(host string) string {
	for l1, h := range s.files {
		if h == host {
			return l1
		}
	}
	l1 := fmt.Sprintf("/e2e/%d-%s", len(s.files), filepath.Base(host))
	s.files[l1] = host
	return l1
}

// boot adds a command to the session; its results are there after run.
func (s *session) boot(name string, timeout time.Duration, args ...string) *bootRun {
	b := &bootRun{name: name, timeout: timeout, args: args, exit: -1, failures: -1}
	s.boots = append(s.boots, b)
	return b
}

// Markers around each command's output in L1.
const (
	beginMarker = "@@E2E-BEGIN "
	endMarker   = "@@E2E-END "
)

// script returns the L1 shell script running every boot in order.
func (s *session) script() string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	// A run-enclave supervisor writes its VM state dumps (no heartbeat,
	// triple fault, SIGUSR1; see nested.StateInGuest for the WARNING line
	// in them) to its log, not to the command's output (nitrovm boot
	// writes its dumps to stderr, which is in the output already). A
	// failed command prints the dumps the logs got while it ran, whole:
	// sizes records each log's size at its start, dumps prints what
	// follows from "vm state dump begins" to "vm state dump ends".
	// E2E_LOG_ROOTS narrows the search for the script's tests on a
	// development host, whose /root holds kernel trees.
	b.WriteString(`logs() { find ${E2E_LOG_ROOTS:-/run /tmp /root} -path '*/logs/*.log' 2>/dev/null; }` + "\n")
	b.WriteString(`sizes() { for l in $(logs); do echo "$(wc -c <"$l") $l"; done; }` + "\n")
	b.WriteString(`dumps() { for l in $(logs); do o=$(awk -v l="$l" '$2 == l { print $1 }' "$1"); ` +
		`tail -c +$((${o:-0} + 1)) "$l" | sed -n '/msg="` + vmm.DumpBeginsMsg + `"/,/msg="` + vmm.DumpEndsMsg + `"/p' | ` +
		`sed "s|^|e2e: supervisor log $l: |"; done; }` + "\n")
	// A command that is still running 20 s before its limit (of 60 s or
	// more) first gets every nitrovm supervise and boot process in L1 a
	// SIGUSR1, so that a hang ends with the VMs' state (in the logs, or
	// in boot's output) rather than with the kill alone.
	b.WriteString(`usr1() { for p in /proc/[0-9]*; do set -f; set -- $(tr '\0' ' ' <$p/cmdline 2>/dev/null); set +f; ` +
		`case "${1##*/} $2" in "nitrovm supervise"|"nitrovm boot"|"nitro-cli supervise") ` +
		`kill -USR1 ${p#/proc/} 2>/dev/null && echo "e2e: SIGUSR1 to ${p#/proc/}: $*";; esac; done; }` + "\n")
	b.WriteString(`now() { cut -d. -f1 /proc/uptime; }` + "\n")
	b.WriteString(`watchdog() { end=$(($(now) + $2)); while [ "$(now)" -lt $end ]; do [ -e "$1" ] && return; sleep 1; done; ` +
		`[ -e "$1" ] || { echo "e2e: still running after $2 s: a state dump (SIGUSR1) from every nitrovm supervise and boot"; usr1; }; }` + "\n")
	// nitrovm_l1_evidence prints, after a failed command or one during
	// which L1 recorded an SVM SHUTDOWN exit (nitrovm_l1_shutdowns: a guest
	// triple-faulted), those exits and L1's modules, and clears the
	// record (nested.EvidenceShell); such a command's dumps are printed
	// too, whatever its exit status.
	b.WriteString(nested.EvidenceShell + "\n")
	// Each command runs once, bounded by busybox timeout (exit 124 or 143
	// when it fires), its output between the begin and end markers. One
	// that failed after 30 s or more (a transfer that stalled, a boot
	// that never answered: not one of the quick failures some steps
	// expect) first gets every VM's state dumped with SIGUSR1, so that
	// the VMs' and devices' state at the failure is in its output; so
	// does the second of two failed commands in a row, however quick (a
	// guest that hung between steps fails the steps after it in seconds
	// each, and would otherwise be dumped only by a later watchdog). A
	// failed command whose output (dumps included) shows L1's state in a
	// guest vCPU (vmm.ForeignStateMarker) ends the session: it will be
	// run again from a fresh L1 (commandFault), and the commands after it
	// would only wait out their own limits against a broken guest.
	b.WriteString(`run() { n=$1; to=$2; shift 2; m=/tmp/e2e-sizes-$n; d=/tmp/e2e-done-$n; sizes >"$m"; rm -f "$d"; ` +
		`s=$(cut -d' ' -f1 /proc/uptime); echo "` + beginMarker + `$n"; ` +
		`[ "$to" -lt 60 ] || watchdog "$d" $((to - 20)) & ` +
		`o=/tmp/e2e-out-$n; timeout "$to" "$@" </dev/null 2>&1 | tee "$o"; rc=$?; touch "$d"; ` +
		`if [ $rc = 0 ]; then fails=0; else fails=$((fails + 1)); fi; ` +
		`if [ $rc != 0 ] && [ $(($(now) - ${s%.*})) -ge 30 ]; then echo "e2e: failed after 30 s or more: a state dump (SIGUSR1) from every nitrovm supervise and boot"; usr1; sleep 2; ` +
		`elif [ "$fails" = 2 ]; then echo "e2e: the second failed command in a row: a state dump (SIGUSR1) from every nitrovm supervise and boot"; usr1; sleep 2; fi; ` +
		`if [ $rc != 0 ] || nitrovm_l1_shutdowns; then dumps "$m" | tee -a "$o"; fi; nitrovm_l1_evidence $rc; ` +
		`stop=; if [ $rc != 0 ] && grep -qF ` + shellQuote(vmm.ForeignStateMarker) + ` "$o"; then stop=1; ` +
		`echo "e2e: $n failed with L1's state in a guest vCPU: the session ends here (an L1 fault: see nested.StateInGuest)"; fi; ` +
		`e=$(cut -d' ' -f1 /proc/uptime); echo; echo "` + endMarker + `$n rc=$rc start=$s end=$e"; [ -z "$stop" ] || exit 0; }` + "\n")
	b.WriteString("set -o pipefail\nfails=0\n")
	for _, r := range s.boots {
		q := make([]string, len(r.args))
		for i, a := range r.args {
			q[i] = shellQuote(a)
		}
		fmt.Fprintf(&b, "run %s %d %s\n", r.name, int(r.timeout.Seconds()), strings.Join(q, " "))
	}
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run boots L1 and runs every boot; it fails the test if L1 itself fails
// and no rerun is left, or if the nested run fails otherwise. Each boot's
// results are then in its bootRun.
//
// A session whose L1 failed (nested.Fault: an oops or panic on L1's kernel
// console, or a freeze) is run again in a fresh L1, whether or not its
// commands happened to pass: see the package comment. So is one in which
// a command failed showing L1's state in a guest vCPU
// (nested.CommandFault on that command's output and exit status).
func (s *session) run() {
	t := s.t
	t.Helper()
	script := filepath.Join(s.e.tmp, fmt.Sprintf("session-%d.sh", time.Now().UnixNano()))
	if err := os.WriteFile(script, []byte(s.script()), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"/e2e/run.sh": script}
	for k, v := range s.files {
		files[k] = v
	}
	timeout := 2 * time.Minute
	for _, b := range s.boots {
		timeout += b.timeout
	}
	var (
		res nested.Result
		err error
	)
	for {
		start := time.Now()
		out := &lineLogger{t: t}
		kernel := &lineLogger{t: t, prefix: "L1 kernel: "}
		res, err = nested.Run(context.Background(), nested.Options{
			Nitrovm:          s.e.nitrovm,
			Files:            files,
			Command:          []string{"/e2e/run.sh"},
			CPUs:             s.cpus,
			CommandOnCPU0:    s.onCPU0,
			OnlyVCPUsOffCPU0: !s.wholeCommandOffCPU0,
			Timeout:          timeout,
			Output:           out,
			KernelOutput:     kernel,
		})
		out.flush()
		kernel.flush()
		fault := res.Fault
		if fault == nil && err == nil {
			fault = s.commandFault(res.Output)
		}
		if fault == nil {
			break
		}
		left, max := s.e.rerunsLeft(t)
		if left <= 0 {
			t.Fatalf("L1 failed (%v) and the run has no rerun left (%d used, at most %d)", fault, max-left, max)
		}
		line := fmt.Sprintf("e2e: RERUN %s attempt %d: %s: %s", t.Name(), s.e.attempt, fault.Class, fault.Evidence)
		fmt.Fprintln(os.Stderr, line)
		t.Log(line)
		if path := os.Getenv("NITROVM_E2E_LOG"); path != "" {
			rec := e2elog.Record{Test: t.Name(), Attempt: s.e.attempt, Result: e2elog.Rerun,
				Class: fault.Class, Evidence: fault.Evidence, Seconds: time.Since(start).Seconds()}
			if err := e2elog.Append(path, rec); err != nil {
				t.Fatalf("e2e log: %v", err)
			}
		}
		s.e.attempt++
	}
	s.output = res.Output
	if err != nil {
		t.Fatalf("nested run: %v", err)
	}
	t.Logf("L1 session: boot %.1fs, total %.1fs, script exit %d", res.Boot.Seconds(), res.Total.Seconds(), res.ExitCode)
	for _, b := range s.boots {
		b.parse(res.Output)
		t.Logf("%s: exit %d in %.1fs (L1 time)", b.name, b.exit, b.seconds)
	}
}

// commandFault returns the L1 fault of the first command of the session
// that ran to its end, failed, and showed L1's state in a guest vCPU
// (nested.CommandFault: the state-dump warning, or a triple fault that L1
// recorded at a rip in its own modules, with a CR3 outside guest RAM, or
// on a page fault the guest's page tables contradict), or that passed
// while a guest died of such a triple fault (nested.ProvenTripleFault),
// its evidence prefixed with the command's name; nil if there is none.
func (s *session) commandFault(out string) *nested.Fault {
	for _, b := range s.boots {
		b.parse(out)
		if !b.ran {
			continue
		}
		// nested.CommandFault, except that a proven triple fault counts
		// whatever the exit status: a guest that the emulator killed
		// during a passing command (its record and dump are printed then
		// too) taints the session as an L1 panic does.
		f := nested.StateInGuest(b.output, b.exit)
		if f == nil {
			f = nested.ProvenTripleFault(b.output)
		}
		if f == nil {
			continue
		}
		name := b.name
		if b.exit == 0 {
			name += " (exit 0)"
		}
		f.Evidence = name + ": " + f.Evidence
		return f
	}
	return nil
}

// parse fills b from the session output.
func (b *bootRun) parse(out string) {
	b.report, b.checks = map[string]string{}, map[string]string{}
	b.ran, b.exit, b.seconds, b.failures = false, -1, 0, -1
	var body []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == beginMarker+b.name:
			in, body = true, nil
			continue
		case in && strings.HasPrefix(line, endMarker+b.name+" "):
			in, b.ran = false, true
			for _, f := range strings.Fields(strings.TrimPrefix(line, endMarker+b.name+" ")) {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "rc":
					b.exit, _ = strconv.Atoi(v)
				case "start":
					s, _ := strconv.ParseFloat(v, 64)
					b.seconds -= s
				case "end":
					e, _ := strconv.ParseFloat(v, 64)
					b.seconds += e
				}
			}
			continue
		}
		if !in {
			continue
		}
		body = append(body, line)
		i := strings.Index(line, "NITROVM-TEST ")
		if i < 0 {
			continue
		}
		kv := line[i+len("NITROVM-TEST "):]
		if n, ok := strings.CutPrefix(kv, "done failures="); ok {
			b.failures, _ = strconv.Atoi(strings.TrimSpace(n))
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if k == "check" {
			name, result, _ := strings.Cut(v, " result=")
			b.checks[name] = result
			continue
		}
		b.report[k] = v
	}
	b.output = strings.Join(body, "\n")
}

// wantExit fails unless the command ran and exited with code.
func (b *bootRun) wantExit(t *testing.T, code int) {
	t.Helper()
	if !b.ran {
		t.Fatalf("%s: did not run to its end; output:\n%s", b.name, b.output)
	}
	if b.exit != code {
		t.Fatalf("%s: exit status: got %d, want %d; output:\n%s%s", b.name, b.exit, code, b.output, failLines(b.output))
	}
}

// failLines repeats the "FAIL:" lines of a command's output (the
// reasons a test script gives when it fails) after the output, whose end
// is state dumps and L1's evidence: a CI log that keeps only the last
// lines of a failed test still shows why the script failed.
func failLines(output string) string {
	var b strings.Builder
	for _, l := range strings.Split(output, "\n") {
		if strings.HasPrefix(l, "FAIL: ") {
			b.WriteString("\n" + l)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\nthe command's FAIL lines again:" + b.String()
}

// want fails unless the guest reported key=value.
func (b *bootRun) want(t *testing.T, key, value string) {
	t.Helper()
	if got, ok := b.report[key]; !ok || got != value {
		t.Errorf("%s: guest %s: got %q, want %q", b.name, key, got, value)
	}
}

// lineLogger sends the L1 console to t.Log line by line, so that `go test
// -v` shows it as it happens.
type lineLogger struct {
	t      *testing.T
	prefix string
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}

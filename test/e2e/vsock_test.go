//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Ports and sizes of the vsock end-to-end test. The enclave ports and
// parent port 8000 are guest/testinit's vsock-echo check's.
const (
	vsockEchoPort     = 5005     // testinit's echo server.
	vsockStopPort     = 5006     // ends testinit's echo check.
	vsockUnservedPort = 5999     // nothing listens there in the enclave.
	vsockForwardPort  = 8000     // parent port testinit dials.
	vsockForwardBytes = 16 << 20 // what testinit sends through it (nitrovm.vsock.bytes).
	vsockTCPEcho      = 9100     // L1 TCP echo server behind --forward.
	vsockPublishPort  = 9200     // --publish 9200:5005.
	vsockBigBytes     = 16 << 20 // one connection per host endpoint.
	vsockManyConns    = 100      // concurrent connections per host endpoint.
	vsockManyBytes    = 256 << 10
	vsockStateDir     = "/run/e2e-vsock"
)

// TestVsock boots three test enclaves with run-enclave, one after the
// other in one L1 session, and exercises every vsock endpoint kind of
// nitrovm against guest/testinit's heartbeat and vsock-echo checks:
//
//   - a: host -> enclave through the hybrid Unix socket and a TCP publish,
//     16 MiB of random data on one connection and 100 concurrent
//     connections each (opened one after the other, then transferring
//     together), SHA-256 compared; the guest -> parent connection
//     goes through --forward to a TCP echo server; a host CONNECT to an
//     unserved enclave port is refused;
//   - b: the guest -> parent connection goes to an AF_VSOCK echo server
//     (--af-vsock, vsock_loopback in L1); 100 host connections through
//     the hybrid Unix socket are opened all at once (a burst), and every
//     one must succeed;
//   - c: the guest -> parent connection goes to the Unix socket <uds>_8000.
//
// Every guest -> parent connection carries 16 MiB, compared by SHA-256 in
// the guest. In each enclave testinit also checks that an unserved parent
// port is refused at once. Throughputs seen by the host are logged, not
// asserted.
//
// 16 MiB per transfer is 64 times the guest's credit window (256 KiB), so
// every transfer goes through many credit updates; it was 64 MiB, and the
// emulator's faults grow with the time L2 vCPUs run (docs/multi-vcpu.md).
// scripts/bench-vsock.sh moves 64 MiB and more.
//
// At most one enclave runs at any time: each is stopped (its stop
// connection, then gone from describe-enclaves) before the next starts.
// Nothing here needs two at once, and several L2 VMs alive at once in
// the emulated L1 make its emulator's faults (guest triple faults, L1
// panics) more likely (docs/multi-vcpu.md). One at a time does not avoid
// them: see docs/vsock.md.
func TestVsock(t *testing.T) {
	e := setup(t)
	tools := e.goBuild(t, "./test/e2e/l1tools", "l1tools")
	s := e.newSession(t)
	eifPath := s.file(e.buildEIF(t, "vsock", e.guestKernel, e.ramdisk(t),
		fmt.Sprintf("%s nitrovm.test=heartbeat,vsock-echo nitrovm.vsock.bytes=%d", awsCmdline, vsockForwardBytes)))
	l1 := s.file(tools)

	sh := func(script string) []string {
		return []string{"sh", "-c", "export NITROVM_STATE_DIR=" + vsockStateDir + "; T=" + l1 + "; " + script}
	}
	servers := s.boot("servers", 30*time.Second, sh(fmt.Sprintf(
		`$T tcp-echo-server 127.0.0.1:%[1]d >/tmp/srv-tcp.log 2>&1 &
$T uds-echo-server /run/vs-c.sock_%[2]d >/tmp/srv-uds.log 2>&1 &
$T afvsock-echo-server %[2]d >/tmp/srv-afvsock.log 2>&1 &
i=0; while [ "$(cat /tmp/srv-*.log | grep -c 'L1TOOLS server')" -lt 3 ] && [ $i -lt 25 ]; do sleep 1; i=$((i+1)); done
cat /tmp/srv-*.log; grep -o '^vsock[a-z_]*' /proc/modules`, vsockTCPEcho, vsockForwardPort))...)
	// run starts enclave name, only if no other enclave is running, and
	// captures its console. run-enclave returns at testinit's heartbeat,
	// which comes before its echo server listens: the step then waits
	// (up to 60 s) for the vsock-listen line, so that the host steps
	// right after it are not refused (docs/multi-vcpu.md, the harness
	// fault of the vsock A/B).
	run := func(name string, cpus int, flags string) *bootRun {
		return s.boot("run-"+name, 240*time.Second, sh(fmt.Sprintf(
			`[ "$(nitrovm describe-enclaves)" = "[]" ] || { echo "an enclave is still running:"; nitrovm describe-enclaves; exit 1; }
nitrovm run-enclave --eif-path %[1]s --memory 256 --cpu-count %[2]d --debug-mode --enclave-name vs-%[3]s --vsock-uds /run/vs-%[3]s.sock %[4]s %[5]s || exit
{ nitrovm console --enclave-name vs-%[3]s >/tmp/vs-%[3]s.con 2>&1 & }
i=0; while ! grep -q 'NITROVM-TEST vsock-listen=' /tmp/vs-%[3]s.con && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
grep -q 'NITROVM-TEST vsock-listen=' /tmp/vs-%[3]s.con || echo "e2e: no vsock-listen line on vs-%[3]s's console after $i s"`,
			eifPath, cpus, name, flags, heartbeatFlag))...)
	}
	// stop ends enclave name's echo check (testinit then reboots the
	// guest, which ends the enclave) and waits until no enclave is left.
	// The guest takes the stop connection only once its 16 MiB to the
	// parent are through or failed (after a minute without progress). An
	// enclave still running 150 s after the step's start (its stop
	// connection included) gets a SIGUSR1 state dump
	// (docs/multi-vcpu.md) in its supervisor's log, which nitrovm-logs
	// prints, and is terminated so that the next one still runs alone;
	// the step then fails. A stop connection that cannot be made means the
	// enclave ended before its check did (a crash, a triple fault): the
	// step prints its console's end and its log, and exits 2.
	stop := func(name string) *bootRun {
		return s.boot("stop-"+name, 180*time.Second, sh(fmt.Sprintf(
			`up() { cut -d. -f1 /proc/uptime; }
end=$(($(up) + 150))
if ! $T connect --uds /run/vs-%[1]s.sock --port %[2]d; then
	echo "e2e: enclave %[1]s was gone before its stop connection; its console's end and its log:"
	tail -n 20 /tmp/vs-%[1]s.con; tail -n 60 "$(ls -t $NITROVM_STATE_DIR/logs/*.log | head -n 1)"
	exit 2
fi
while [ "$(nitrovm describe-enclaves)" != "[]" ] && [ "$(up)" -lt $end ]; do sleep 1; done
nitrovm describe-enclaves
if [ "$(nitrovm describe-enclaves)" != "[]" ]; then
	for p in $(nitrovm describe-enclaves | sed -n 's/.*"ProcessID": \([0-9]*\).*/\1/p'); do kill -USR1 $p; done; sleep 5
	nitrovm terminate-enclave --all
	exit 1
fi`, name, vsockStopPort))...)
	}
	// Every enclave has 2 vCPUs, as the smallest real Nitro Enclave does
	// (docs/multi-vcpu.md).
	const cpus = 2

	// Enclave a: every host -> enclave endpoint, --forward.
	runA := run("a", cpus, fmt.Sprintf("--forward %d=127.0.0.1:%d --publish %d:%d", vsockForwardPort, vsockTCPEcho, vsockPublishPort, vsockEchoPort))
	uds := fmt.Sprintf("--uds /run/vs-a.sock --port %d", vsockEchoPort)
	tcp := fmt.Sprintf("--tcp 127.0.0.1:%d", vsockPublishPort)
	// Timeouts here bound hangs only: a transfer that makes no progress
	// for a minute fails in l1tools and testinit. 64 MiB host -> enclave
	// took 94 s when three enclaves ran at once, each sending 64 MiB to
	// the parent.
	echo := func(name, endpoint string, size, conns int) *bootRun {
		return s.boot(name, 300*time.Second, sh(fmt.Sprintf("$T echo-check %s --bytes %d --conns %d", endpoint, size, conns))...)
	}
	udsBig := echo("uds-16mib", uds, vsockBigBytes, 1)
	tcpBig := echo("publish-16mib", tcp, vsockBigBytes, 1)
	udsMany := echo("uds-100conns", uds, vsockManyBytes, vsockManyConns)
	tcpMany := echo("publish-100conns", tcp, vsockManyBytes, vsockManyConns)
	unserved := s.boot("uds-unserved", 30*time.Second, sh(fmt.Sprintf("$T connect --uds /run/vs-a.sock --port %d", vsockUnservedPort))...)
	stopA := stop("a")

	// Enclave b: --af-vsock, and 100 handshakes at once (its echo counts
	// are not checked): every one must succeed.
	runB := run("b", cpus, "--af-vsock")
	burst := s.boot("uds-100conns-burst", 150*time.Second, sh(fmt.Sprintf(
		"$T echo-check --uds /run/vs-b.sock --port %d --bytes %d --conns %d --burst", vsockEchoPort, vsockManyBytes, vsockManyConns))...)
	stopB := stop("b")

	// Enclave c: the parent's Unix socket <uds>_8000.
	runC := run("c", cpus, "")
	stopC := stop("c")

	left := s.boot("describe-enclaves", 10*time.Second, sh("nitrovm describe-enclaves")...)
	consoles := map[string]*bootRun{}
	for _, x := range []string{"a", "b", "c"} {
		consoles[x] = s.boot("console-"+x, 10*time.Second, "cat", "/tmp/vs-"+x+".con")
	}
	served := s.boot("servers-log", 10*time.Second, "sh", "-c", "cat /tmp/srv-*.log")
	s.boot("nitrovm-logs", 10*time.Second, "sh", "-c", "tail -n 150 "+vsockStateDir+"/logs/*.log "+vsockStateDir+"/events.log")
	s.run()

	servers.wantExit(t, 0)
	for _, r := range []*bootRun{runA, runB, runC} {
		r.wantExit(t, 0)
		t.Logf("%s: run-enclave returned after the heartbeat in %.1fs (L1 time)", r.name, r.seconds)
	}
	for _, r := range []*bootRun{stopA, stopB, stopC} {
		switch {
		case r.exit == 2:
			t.Errorf("%s: the enclave had ended before its stop connection:\n%s", r.name, r.output)
		case r.exit != 0 || !strings.HasSuffix(strings.TrimSpace(r.output), "[]"):
			t.Errorf("%s: exit %d; enclave still running after its stop connection (then terminated):\n%s", r.name, r.exit, r.output)
		}
	}
	if got := strings.TrimSpace(left.output); left.exit != 0 || got != "[]" {
		t.Errorf("describe-enclaves at the end: exit %d, got %s, want []", left.exit, got)
	}
	// Every enclave: heartbeat answered, then the echo check ran to its end.
	for _, x := range []string{"a", "b", "c"} {
		c := consoles[x]
		if c.checks["heartbeat"] != "ok" || c.checks["vsock-echo"] != "ok" || c.failures != 0 {
			t.Errorf("enclave %s: testinit checks %v, failures %d; want heartbeat and vsock-echo ok, 0\n%s", x, c.checks, c.failures, c.output)
		}
		if !strings.HasPrefix(c.report["heartbeat"], "ok") {
			t.Errorf("enclave %s: heartbeat: got %q, want ok", x, c.report["heartbeat"])
		}
		if !strings.HasPrefix(c.report["vsock-refused"], "ok") {
			t.Errorf("enclave %s: connect to an unserved parent port: got %q, want ok (refused at once)", x, c.report["vsock-refused"])
		}
		want := fmt.Sprintf("ok bytes=%d ", vsockForwardBytes)
		if got := c.report["vsock-forward"]; !strings.HasPrefix(got, want) {
			t.Errorf("enclave %s: guest -> parent port %d: got %q, want %q...", x, vsockForwardPort, got, want)
		}
		// A guest socket with a 64 KiB buffer keeps at most that in flight
		// (Linux 6.12.y): the echo must work within that window both ways.
		if got := c.report["vsock-forward-smallbuf"]; !strings.HasPrefix(got, "ok bytes=1048576 ") {
			t.Errorf("enclave %s: guest -> parent port %d from a 64 KiB socket buffer: got %q, want \"ok bytes=1048576 ...\"", x, vsockForwardPort, got)
		}
		t.Logf("enclave %s: heartbeat %s, forward %s, small-buffer forward %s, refused %s", x, c.report["heartbeat"], c.report["vsock-forward"], c.report["vsock-forward-smallbuf"], c.report["vsock-refused"])
	}

	t.Run("host-to-enclave", func(t *testing.T) {
		for _, r := range []*bootRun{udsBig, tcpBig, udsMany, tcpMany} {
			res := toolLine(r, "echo")
			t.Logf("%s: %s", r.name, strings.Join(fieldsOf(res, "kind", "conns", "bytes_each", "seconds", "dial_ms_max", "to_enclave_MBps", "from_enclave_MBps"), " "))
			if r.exit != 0 || res == nil {
				t.Errorf("%s: exit %d, result %v; output:\n%s", r.name, r.exit, res, r.output)
				continue
			}
			if got, want := res["ok"], res["conns"]; got != want {
				t.Errorf("%s: connections echoed intact: got %s, want %s (%s)", r.name, got, want, res["err"])
			}
			if res["conns"] == "1" && (res["sha256_sent"] == "" || res["sha256_sent"] != res["sha256_echo"]) {
				t.Errorf("%s: SHA-256 of the echo: got %s, want %s", r.name, res["sha256_echo"], res["sha256_sent"])
			}
		}
		// The guest counts what its echo server saw: each connection
		// also echoes l1tools' one-byte probe.
		wantConns := 2 + 2*vsockManyConns
		wantBytes := 2*(vsockBigBytes+1) + 2*vsockManyConns*(vsockManyBytes+1)
		if got, want := consoles["a"].report["vsock-echo"], fmt.Sprintf("stopped conns=%d bytes=%d", wantConns, wantBytes); got != want {
			t.Errorf("enclave a echo server: got %q, want %q", got, want)
		}
	})
	t.Run("host-burst", func(t *testing.T) {
		res := toolLine(burst, "echo")
		if burst.exit != 0 || res == nil {
			t.Fatalf("%s: exit %d, result %v; output:\n%s", burst.name, burst.exit, res, burst.output)
		}
		t.Logf("%s: ok=%s/%s dial_ms_max=%s seconds=%s", burst.name, res["ok"], res["conns"], res["dial_ms_max"], res["seconds"])
		if res["conns"] != strconv.Itoa(vsockManyConns) || res["ok"] != res["conns"] {
			t.Errorf("%s: connections opened at once and echoed intact: got %s of %s, want %d (%s)", burst.name, res["ok"], res["conns"], vsockManyConns, res["err"])
		}
	})
	t.Run("host-unserved-port", func(t *testing.T) {
		res := toolLine(unserved, "connect")
		// The refusal must be nitrovm's answer to CONNECT, not a Unix
		// socket no one listens on (enclave a already gone).
		if unserved.exit != 1 || res == nil || res["ok"] != "0" || !strings.HasPrefix(res["err"], "CONNECT_") {
			t.Errorf("CONNECT %d (no listener): exit %d, result %v; want exit 1, ok=0, err from the CONNECT handshake\n%s", vsockUnservedPort, unserved.exit, res, unserved.output)
		}
		t.Logf("CONNECT %d refused after %s ms: %s", vsockUnservedPort, res["ms"], res["err"])
	})
	t.Run("enclave-to-parent", func(t *testing.T) {
		for _, kind := range []string{"tcp", "afvsock", "uds"} {
			if !servedBytes(served, kind, vsockForwardBytes) {
				t.Errorf("%s echo server in L1: no connection of %d bytes; log:\n%s", kind, vsockForwardBytes, served.output)
			}
		}
	})
	if !strings.Contains(servers.output, "vsock_loopback") {
		t.Errorf("vsock_loopback not loaded in L1 (AF_VSOCK endpoint untested); /proc/modules vsock entries:\n%s", servers.output)
	}
}

// toolLine returns the fields of b's first "L1TOOLS <kind> ..." line, nil if
// there is none.
func toolLine(b *bootRun, kind string) map[string]string {
	for _, line := range strings.Split(b.output, "\n") {
		i := strings.Index(line, "L1TOOLS "+kind+" ")
		if i < 0 {
			continue
		}
		m := map[string]string{}
		for _, f := range strings.Fields(line[i+len("L1TOOLS "+kind+" "):]) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}
	return nil
}

// fieldsOf returns "k=v" for each key of m, in order.
func fieldsOf(m map[string]string, keys ...string) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}

// servedBytes reports whether l1tools' kind echo server logged a
// connection that echoed n bytes without error.
func servedBytes(b *bootRun, kind string, n int) bool {
	want := "bytes=" + strconv.Itoa(n) + " err=<nil>"
	for _, line := range strings.Split(b.output, "\n") {
		if strings.Contains(line, "L1TOOLS served kind="+kind+" ") && strings.Contains(line, want) {
			return true
		}
	}
	return false
}

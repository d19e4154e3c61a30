//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSignalsAndBootTime checks, on real guests in one L1 session, two
// claims of the README:
//
//   - run-enclave prints "enclave booted in N ms" on stderr (the
//     supervisor's time from VM launch to heartbeat) and describe-enclaves
//     --metadata reports the same N as BootTimeMs;
//   - SIGTERM and SIGINT stop an enclave's supervisor cleanly (enclave gone
//     from describe-enclaves, its state removed, the supervisor exited and
//     reaped) and stop "nitrovm boot" with exit status 4.
//
// The guest is testinit running heartbeat and vsock-echo, which keeps it
// up (waiting for connections) until it is stopped.
func TestSignalsAndBootTime(t *testing.T) {
	e := setup(t)
	s := e.newSession(t)
	eifPath := s.file(e.testEIF(t, e.guestKernel, "heartbeat,vsock-echo"))
	const state = "/run/e2e-signals"

	supervised := map[string]*bootRun{}
	for _, sig := range []string{"TERM", "INT"} {
		supervised[sig] = s.boot("run-"+sig, 240*time.Second, "sh", "-c", fmt.Sprintf(`export NITROVM_STATE_DIR=%[1]s
nitrovm run-enclave --eif-path %[2]s --memory 256 --cpu-count 2 --debug-mode --enclave-name sig-%[3]s %[4]s >/tmp/run.json 2>/tmp/run.err
rc=$?; cat /tmp/run.err /tmp/run.json; [ $rc = 0 ] || exit $rc
nitrovm describe-enclaves --metadata
pid=$(sed -n 's/.*"ProcessID": \([0-9]*\).*/\1/p' /tmp/run.json)
echo "signal $pid"; kill -%[3]s "$pid"
i=0; while [ "$(nitrovm describe-enclaves | tr -d ' \n')" != "[]" ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
echo "after-signal listed=$(nitrovm describe-enclaves | tr -d ' \n') records=$(find %[1]s -name record.json | wc -l) alive=$(kill -0 "$pid" 2>/dev/null && echo yes || echo no)"
tail -n 2 %[1]s/events.log`, state, eifPath, sig, heartbeatFlag))
	}
	booted := map[string]*bootRun{}
	for _, sig := range []string{"TERM", "INT"} {
		booted[sig] = s.boot("boot-"+sig, 240*time.Second, "sh", "-c", fmt.Sprintf(`nitrovm boot --eif-path %s --memory 256 --cpu-count 2 --console stdout >/tmp/boot.out 2>&1 &
pid=$!
i=0; while ! grep -q 'NITROVM-TEST vsock-listen=' /tmp/boot.out && [ $i -lt 200 ]; do sleep 1; i=$((i+1)); done
grep 'NITROVM-TEST' /tmp/boot.out
kill -%s $pid; wait $pid; echo "boot-rc=$?"; tail -n 3 /tmp/boot.out`, eifPath, sig))
	}
	s.run()

	bootMs := regexp.MustCompile(`enclave booted in ([0-9]+) ms`)
	for sig, r := range supervised {
		t.Run("supervisor-SIG"+sig, func(t *testing.T) {
			r.wantExit(t, 0)
			m := bootMs.FindStringSubmatch(r.output)
			if m == nil {
				t.Fatalf("run-enclave stderr has no \"enclave booted in N ms\":\n%s", r.output)
			}
			ms, _ := strconv.Atoi(m[1])
			if ms <= 0 || !strings.Contains(r.output, `"BootTimeMs": `+m[1]) {
				t.Errorf("boot time %s ms: want > 0 and the same BootTimeMs in describe-enclaves --metadata:\n%s", m[1], r.output)
			}
			t.Logf("SIG%s: enclave booted in %d ms (nested, not a benchmark)", sig, ms)
			if !strings.Contains(r.output, "after-signal listed=[] records=0 alive=no") {
				t.Errorf("after SIG%s: want no enclave listed, no record left, supervisor gone:\n%s", sig, r.output)
			}
			if !strings.Contains(r.output, `"Event":"terminated"`) || !strings.Contains(r.output, "supervisor interrupted") {
				t.Errorf("after SIG%s: events.log does not record the termination:\n%s", sig, r.output)
			}
		})
	}
	for sig, r := range booted {
		t.Run("boot-SIG"+sig, func(t *testing.T) {
			r.wantExit(t, 0)
			if !strings.Contains(r.output, "NITROVM-TEST vsock-listen=") {
				t.Fatalf("the guest never got to its echo server; output:\n%s", r.output)
			}
			if !strings.Contains(r.output, "boot-rc=4") || !strings.Contains(r.output, "nitrovm: stopped") {
				t.Errorf("nitrovm boot after SIG%s: want exit status 4 and \"nitrovm: stopped\":\n%s", sig, r.output)
			}
		})
	}
}

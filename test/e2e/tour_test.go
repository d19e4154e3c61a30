//go:build e2e

package e2e

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTour runs steps 2-4 of the README's five-minute tour as written, in
// one L1: the demo parent started first, nitro-cli (a symlink to nitrovm)
// run-enclave in debug mode on the demo image, describe-enclaves, an echo
// on the enclave's port 5005 through its hybrid vsock socket (step 3's
// socat, done by l1tools), ca export and attestation verify of the saved
// document: valid, with PCRs of zeros, and refused when PCR0 is pinned to
// the EIF's. Then the same without --debug-mode, where pinning PCR0 must
// pass. Step 1's image is built as the tour does, from demo/mkimage's
// tarball; the kernel is the tests' (--kernel) and run-enclave gets the
// tests' heartbeat timeout, as elsewhere under TCG.
func TestTour(t *testing.T) {
	e := setup(t)
	parent := e.goBuild(t, "./demo/parent", "parent")
	tools := e.goBuild(t, "./test/e2e/l1tools", "l1tools")
	eifPath := e.demoEIF(t, "hello", "nitrovm-demo/hello:latest", nil)
	pcr0 := hex.EncodeToString(measureEIF(t, eifPath).PCR0)

	s := e.newSession(t)
	// start MODE: step 2 (the parent first, then run-enclave) and the
	// parent's result; MODE is --debug-mode or empty.
	script := fmt.Sprintf(`P=%[1]s T=%[2]s
export HOME=${HOME:-/root} PATH=/usr/local/bin:$PATH
mkdir -p /tmp/tour /usr/local/bin && cd /tmp/tour && cp %[3]s hello.eif
ln -sf "$(command -v nitrovm)" /usr/local/bin/nitro-cli
start() {
	$P -uds /run/hello.sock -out doc.cbor -timeout 240s >parent.out 2>&1 &
	p=$!
	nitro-cli run-enclave --eif-path hello.eif --memory 256 --cpu-count 2 $1 --vsock-uds /run/hello.sock %[4]s
	rc=$?; echo "TOUR run$1 rc=$rc"
	[ $rc = 0 ] || { kill $p; for f in /run/nitrovm/logs/*.log; do echo "--- $f"; tail -n 40 "$f"; done; }
	wait $p; echo "TOUR parent$1 rc=$?"; cat parent.out
}
start --debug-mode
nitro-cli describe-enclaves | tr -d ' \n'; echo
$T echo-check --uds /run/hello.sock --port 5005 --bytes 6; echo "TOUR echo rc=$?"
nitrovm ca export --out root.pem >/dev/null; echo "TOUR ca rc=$?"
nitrovm attestation verify --root root.pem doc.cbor >v.json; echo "TOUR verify rc=$?"; tr -d ' \n' <v.json; echo
nitrovm attestation verify --root root.pem --pcr 0=%[5]s doc.cbor >/dev/null 2>&1; echo "TOUR verify-debug-pinned rc=$?"
nitro-cli terminate-enclave --enclave-name hello >/dev/null; echo "TOUR terminate rc=$?"
start ""
nitrovm attestation verify --root root.pem --pcr 0=%[5]s doc.cbor >v.json; echo "TOUR verify-pinned rc=$?"; tr -d ' \n' <v.json; echo
nitro-cli terminate-enclave --all >/dev/null; echo "TOUR terminate-all rc=$?"
`, s.file(parent), s.file(tools), s.file(eifPath), heartbeatFlag, pcr0)
	run := s.boot("tour", 8*time.Minute, "sh", "-c", script)
	s.run()
	run.wantExit(t, 0)

	rcs := map[string]string{}
	for _, m := range regexp.MustCompile(`TOUR (\S+) rc=(\d+)`).FindAllStringSubmatch(run.output, -1) {
		rcs[m[1]] = m[2]
	}
	zeros := strings.Repeat("0", 96)
	for _, c := range []struct{ step, rc, want string }{
		{"run--debug-mode", "0", `"EnclaveName":"hello"`},
		{"parent--debug-mode", "0", `parent: echo over vsock port 5005: sent "hello, enclave", got "hello, enclave"`},
		{"echo", "0", ""},
		{"ca", "0", ""},
		{"verify", "0", `"Valid":true`},
		{"verify", "0", `"PCRs":{"0":"` + zeros + `"`},
		{"verify-debug-pinned", "1", ""},
		{"terminate", "0", ""},
		{"run", "0", ""},
		{"parent", "0", "parent: received the attestation document"},
		{"verify-pinned", "0", `"PCRs":{"0":"` + pcr0 + `"`},
		{"verify-pinned", "0", `"Valid":true`},
		{"terminate-all", "0", ""},
	} {
		if got := rcs[c.step]; got != c.rc {
			t.Errorf("step %s: exit status %q, want %s", c.step, got, c.rc)
		}
		if c.want != "" && !strings.Contains(run.output, c.want) {
			t.Errorf("step %s: output lacks %q", c.step, c.want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", run.output)
	}
}

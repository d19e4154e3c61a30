//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/attestation"
	"github.com/nitrovm/nitrovm/eif"
)

// Inputs and constants of the NSM end-to-end test. The testinit values
// mirror guest/testinit/nsm.go.
const (
	nsmParentRole  = "arn:aws:iam::123456789012:role/Webserver"
	nsmParentID    = "i-0123456789abcdef0"
	nsmStateDir    = "/run/e2e-nsm"
	nsmExtendData  = "nitrovm-testinit-pcr16"
	nsmUserData    = "nitrovm-testinit-user-data"
	nsmPublicKey   = "nitrovm-testinit-public-key"
	nsmHwrngBytes  = 32
	nsmRootBegin   = "@@ROOT-BEGIN"
	nsmRootEnd     = "@@ROOT-END"
	nsmLockedPCRs  = "[0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]"
	nsmLockedError = "ReadOnlyIndex"
	// nsmReportPort is the parent port testinit sends its report to
	// (nitrovm.report=); the production enclave's --vsock-uds is
	// nsmProdUDS, so nitrovm delivers it to nsmProdUDS_<port>.
	nsmReportPort = 7000
	nsmProdUDS    = "/tmp/p.sock"
)

// TestNSM runs guest/testinit's nsm check in a debug-mode enclave started
// with run-enclave --attach-console --parent-role --parent-id, in one L1
// session with: describe-eif of the same EIF, nitrovm ca export, and
// nitrovm attestation verify of the document the guest fetched. On L0 it
// then checks the guest's PCR0-4 and PCR16, its random bytes and hwrng,
// and verifies the document again with package attestation against the
// root exported in L1.
//
// A debug-mode document carries all-zero PCRs (as on Nitro), so it is
// verified against zeros, and checked to fail against the EIF's PCR0; the
// real PCR values are the guest's DescribePCR answers.
//
// The same session then runs the same EIF in a production-mode enclave
// (no console): testinit sends its report over vsock (nitrovm.report=) to
// parent port nsmReportPort, which nitrovm delivers to the Unix socket
// <vsock-uds>_<port>, where "l1tools uds-sink" writes it to a file. The
// document that enclave got over /dev/nsm is verified in L1 with
// "nitrovm attestation verify" against the exported root, the nonce and
// describe-eif's PCR0-2 (and PCR3/PCR4 of the parent), and on L0 with
// package attestation against eif.Measure's PCR0-2; its PCR0 must be
// non-zero and equal describe-eif's. The debug-mode enclave has no
// listener on that port, so its report goes to the console only. A third
// document, built by "nitrovm attestation issue" for the same EIF and
// parent, is verified in L1 against the EIF's PCR0-4 too.
func TestNSM(t *testing.T) {
	e := setup(t)
	tools := e.goBuild(t, "./test/e2e/l1tools", "l1tools")
	s := e.newSession(t)
	hostEIF := nsmEIF(t, e)
	meas := measureEIF(t, hostEIF)
	// PCR3 and PCR4 computed here, not by nitrovm's code: SHA-384 of 48
	// zero bytes followed by the role ARN's or instance ID's bytes, as AWS
	// documents them (PCR3's published example is checked in package eif).
	pcr3, pcr4 := zeroExtend(nsmParentRole), zeroExtend(nsmParentID)
	zero := make([]byte, 48)
	eifPath := s.file(hostEIF)
	l1 := s.file(tools)

	sh := func(script string) []string {
		return []string{"sh", "-c", "export NITROVM_STATE_DIR=" + nsmStateDir + "; T=" + l1 + "; " + script}
	}
	describe := s.boot("describe-eif", 30*time.Second, "nitrovm", "describe-eif", "--eif-path", eifPath)
	run := s.boot("run", 240*time.Second, sh(fmt.Sprintf(
		`timeout 200 nitrovm run-enclave --eif-path %s --memory 256 --cpu-count 2 --attach-console --enclave-name nsm --parent-role %s --parent-id %s %s >/tmp/nsm.con 2>&1
rc=$?; cat /tmp/nsm.con; exit $rc`, eifPath, nsmParentRole, nsmParentID, heartbeatFlag))...)
	verify := s.boot("verify", 60*time.Second, sh(fmt.Sprintf(
		`tr -d '\r' </tmp/nsm.con >/tmp/nsm.txt
nonce=$(sed -n 's/.*NITROVM-TEST attestation_nonce=//p' /tmp/nsm.txt)
sed -n 's/.*NITROVM-TEST attestation=//p' /tmp/nsm.txt >/tmp/doc.b64
nitrovm ca export --out /tmp/root.pem || exit 1
echo %[1]s; cat /tmp/root.pem; echo %[2]s
v() { name=$1; shift; nitrovm attestation verify --root /tmp/root.pem "$@"; echo "L1TOOLS verify name=$name rc=$?"; }
v debug-doc-zero-pcrs --nonce "$nonce" --pcr 0=%[3]x --pcr 3=%[3]x --pcr 4=%[3]x /tmp/doc.b64
v debug-doc-eif-pcr0 --nonce "$nonce" --pcr 0=%[4]x /tmp/doc.b64
v debug-doc-wrong-nonce --nonce 00 /tmp/doc.b64
nitrovm attestation issue --eif-path %[5]s --parent-role %[6]s --parent-id %[7]s --nonce "$nonce" --out /tmp/issued.cbor >/dev/null || exit 1
v issued-doc-eif-pcrs --nonce "$nonce" --pcr 0=%[4]x --pcr 1=%[8]x --pcr 2=%[9]x --pcr 3=%[10]x --pcr 4=%[11]x /tmp/issued.cbor`,
		nsmRootBegin, nsmRootEnd, zero, meas.PCR0, eifPath, nsmParentRole, nsmParentID, meas.PCR1, meas.PCR2, pcr3, pcr4))...)
	sinkPath := fmt.Sprintf("%s_%d", nsmProdUDS, nsmReportPort)
	prodRun := s.boot("prod-run", 300*time.Second, sh(fmt.Sprintf(
		`$T uds-sink --path %[1]s --out /tmp/prod.txt --timeout 280s >/tmp/sink.log 2>&1 &
i=0; while ! grep -q 'L1TOOLS sink listen' /tmp/sink.log && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done
nitrovm run-enclave --eif-path %[2]s --memory 256 --cpu-count 2 --enclave-name nsm-prod --vsock-uds %[3]s --parent-role %[4]s --parent-id %[5]s %[6]s || exit 1
i=0; while ! grep -q 'L1TOOLS sink path=' /tmp/sink.log && [ $i -lt 240 ]; do sleep 1; i=$((i+1)); done
i=0; while [ "$(nitrovm describe-enclaves)" != "[]" ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
cat /tmp/sink.log; echo "enclaves: $(nitrovm describe-enclaves | tr -d '\n ')"
grep -q 'L1TOOLS sink .*ok=1' /tmp/sink.log && grep -q 'NITROVM-TEST done' /tmp/prod.txt`,
		sinkPath, eifPath, nsmProdUDS, nsmParentRole, nsmParentID, heartbeatFlag))...)
	prodReport := s.boot("prod-report", 10*time.Second, "sh", "-c", "tr -d '\\r' </tmp/prod.txt")
	prodVerify := s.boot("prod-verify", 60*time.Second, sh(fmt.Sprintf(
		`nonce=$(sed -n 's/^NITROVM-TEST attestation_nonce=//p' /tmp/prod.txt)
sed -n 's/^NITROVM-TEST attestation=//p' /tmp/prod.txt >/tmp/prod-doc.b64
nitrovm ca export >/tmp/prod-root.pem || exit 1
cmp /tmp/root.pem /tmp/prod-root.pem || exit 1
v() { name=$1; shift; nitrovm attestation verify --root /tmp/prod-root.pem "$@"; echo "L1TOOLS verify name=$name rc=$?"; }
v prod-doc-eif-pcrs --nonce "$nonce" --pcr 0=%[1]x --pcr 1=%[2]x --pcr 2=%[3]x /tmp/prod-doc.b64
v prod-doc-parent-pcrs --nonce "$nonce" --pcr 0=%[1]x --pcr 3=%[4]x --pcr 4=%[5]x /tmp/prod-doc.b64
v prod-doc-zero-pcr0 --nonce "$nonce" --pcr 0=%[6]x /tmp/prod-doc.b64
v prod-doc-wrong-nonce --nonce 00 --pcr 0=%[1]x /tmp/prod-doc.b64`,
		meas.PCR0, meas.PCR1, meas.PCR2, pcr3, pcr4, zero))...)
	s.boot("nitrovm-logs", 10*time.Second, "sh", "-c", "tail -n 30 "+nsmStateDir+"/logs/*.log "+nsmStateDir+"/events.log")
	s.run()

	describe.wantExit(t, 0)
	run.wantExit(t, 0)
	verify.wantExit(t, 0)
	t.Logf("run-enclave --attach-console: exit %d in %.1fs (L1 time); guest %v", run.exit, run.seconds, run.checks)
	if run.checks["heartbeat"] != "ok" || run.checks["nsm"] != "ok" || run.failures != 0 {
		t.Fatalf("testinit checks %v, failures %d; want heartbeat and nsm ok, 0\n%s", run.checks, run.failures, run.output)
	}

	t.Run("pcrs", func(t *testing.T) {
		var d struct{ Measurements map[string]string }
		if err := json.Unmarshal([]byte(jsonObject(describe.output)), &d); err != nil {
			t.Fatalf("describe-eif output: %v\n%s", err, describe.output)
		}
		want := map[string][]byte{"pcr0": meas.PCR0, "pcr1": meas.PCR1, "pcr2": meas.PCR2, "pcr3": pcr3, "pcr4": pcr4,
			"pcr16": eif.Extend(zero, []byte(nsmExtendData))}
		for i := 0; i <= 2; i++ {
			k := "PCR" + strconv.Itoa(i)
			if got := d.Measurements[k]; got != hex.EncodeToString(want[strings.ToLower(k)]) {
				t.Errorf("describe-eif in L1 %s: got %s, want %x (package eif on L0)", k, got, want[strings.ToLower(k)])
			}
		}
		for k, w := range want {
			if got := run.report[k]; got != hex.EncodeToString(w) {
				t.Errorf("guest DescribePCR %s: got %s, want %x", k, got, w)
			}
		}
		run.want(t, "nsm_locked_pcrs", nsmLockedPCRs)
		run.want(t, "pcr16_locked_extend", nsmLockedError)
		run.want(t, "nsm_max_pcrs", "32")
		run.want(t, "nsm_digest", "SHA384")
	})
	t.Run("random", func(t *testing.T) {
		if n, err := strconv.Atoi(run.report["random_bytes"]); err != nil || n <= 0 {
			t.Errorf("GetRandom: got %q bytes, want > 0", run.report["random_bytes"])
		}
		run.want(t, "hwrng_bytes", strconv.Itoa(nsmHwrngBytes))
		t.Logf("hwrng_current=%s", run.report["hwrng_current"])
	})
	t.Run("verify-in-l1", func(t *testing.T) {
		wantVerify(t, verify.output, map[string]string{
			"debug-doc-zero-pcrs":   "0",
			"debug-doc-eif-pcr0":    "1", // debug-mode documents carry zero PCRs
			"debug-doc-wrong-nonce": "1",
			"issued-doc-eif-pcrs":   "0",
		})
	})
	t.Run("verify-on-l0", func(t *testing.T) {
		roots, cert := l1Root(t, verify.output)
		doc, err := base64.StdEncoding.DecodeString(run.report["attestation"])
		if err != nil {
			t.Fatalf("guest attestation document: %v", err)
		}
		nonce, err := hex.DecodeString(run.report["attestation_nonce"])
		if err != nil || len(nonce) == 0 {
			t.Fatalf("guest nonce %q: %v", run.report["attestation_nonce"], err)
		}
		res, err := attestation.Verify(doc, attestation.VerifyOptions{Roots: roots, Nonce: nonce, PCRs: map[int][]byte{0: zero, 3: zero, 4: zero}})
		if err != nil {
			t.Fatalf("attestation.Verify with the root exported in L1: %v", err)
		}
		d := res.Document
		if got, want := d.ModuleID, run.report["nsm_module_id"]; got != want {
			t.Errorf("module_id: got %q, want %q (DescribeNSM)", got, want)
		}
		if !bytes.Equal(d.UserData, []byte(nsmUserData)) || !bytes.Equal(d.PublicKey, []byte(nsmPublicKey)) {
			t.Errorf("user_data, public_key: got %q, %q, want %q, %q", d.UserData, d.PublicKey, nsmUserData, nsmPublicKey)
		}
		for i := 0; i <= 16; i++ {
			if !bytes.Equal(d.PCRs[i], zero) {
				t.Errorf("debug-mode document PCR%d: got %x, want 48 zero bytes", i, d.PCRs[i])
			}
		}
		t.Logf("document: %d bytes, module %s, timestamp %v, %d PCRs, chain of %d to %q",
			len(doc), d.ModuleID, d.Time(), len(d.PCRs), len(res.Chain), cert.Subject.CommonName)
	})
	if !strings.Contains(run.output, fmt.Sprintf("report: dial parent port %d", nsmReportPort)) {
		t.Errorf("debug enclave: got no refused report channel in its console, want one (no listener):\n%s", run.output)
	}

	t.Run("production", func(t *testing.T) {
		prodRun.wantExit(t, 0)
		prodReport.wantExit(t, 0)
		prodVerify.wantExit(t, 0)
		r := prodReport
		t.Logf("production enclave: run-enclave + report in %.1fs (L1 time); guest %v", prodRun.seconds, r.checks)
		if r.checks["heartbeat"] != "ok" || r.checks["nsm"] != "ok" || r.failures != 0 {
			t.Fatalf("production enclave report over vsock: checks %v, failures %d; want heartbeat and nsm ok, 0\n%s\n%s",
				r.checks, r.failures, r.output, prodRun.output)
		}
		wantVerify(t, prodVerify.output, map[string]string{
			"prod-doc-eif-pcrs":    "0",
			"prod-doc-parent-pcrs": "0",
			"prod-doc-zero-pcr0":   "1",
			"prod-doc-wrong-nonce": "1",
		})

		roots, _ := l1Root(t, verify.output)
		doc, err := base64.StdEncoding.DecodeString(r.report["attestation"])
		if err != nil {
			t.Fatalf("production attestation document: %v", err)
		}
		nonce, err := hex.DecodeString(r.report["attestation_nonce"])
		if err != nil || len(nonce) == 0 {
			t.Fatalf("production nonce %q: %v", r.report["attestation_nonce"], err)
		}
		pcr16 := eif.Extend(zero, []byte(nsmExtendData))
		res, err := attestation.Verify(doc, attestation.VerifyOptions{Roots: roots, Nonce: nonce,
			PCRs: map[int][]byte{0: meas.PCR0, 1: meas.PCR1, 2: meas.PCR2, 3: pcr3, 4: pcr4, 16: pcr16}})
		if err != nil {
			t.Fatalf("attestation.Verify of the production document against eif.Measure's PCR0-2: %v", err)
		}
		d := res.Document
		var desc struct{ Measurements map[string]string }
		if err := json.Unmarshal([]byte(jsonObject(describe.output)), &desc); err != nil {
			t.Fatalf("describe-eif output: %v\n%s", err, describe.output)
		}
		if bytes.Equal(d.PCRs[0], zero) {
			t.Errorf("production document PCR0: got %x, want non-zero", d.PCRs[0])
		}
		if got, want := hex.EncodeToString(d.PCRs[0]), desc.Measurements["PCR0"]; got != want {
			t.Errorf("production document PCR0: got %s, want %s (describe-eif in L1)", got, want)
		}
		for i := 0; i <= 4; i++ {
			if got, want := hex.EncodeToString(d.PCRs[i]), r.report[fmt.Sprintf("pcr%d", i)]; got != want {
				t.Errorf("production document PCR%d: got %s, want %s (the guest's DescribePCR)", i, got, want)
			}
		}
		if !bytes.Equal(d.UserData, []byte(nsmUserData)) || !bytes.Equal(d.PublicKey, []byte(nsmPublicKey)) {
			t.Errorf("user_data, public_key: got %q, %q, want %q, %q", d.UserData, d.PublicKey, nsmUserData, nsmPublicKey)
		}
		t.Logf("production document: %d bytes, PCR0 %x, verified in L1 and on L0", len(doc), d.PCRs[0])
	})
}

// zeroExtend returns SHA-384(48 zero bytes || s), computed with
// crypto/sha512 alone.
func zeroExtend(s string) []byte {
	h := sha512.Sum384(append(make([]byte, 48), s...))
	return h[:]
}

// nsmEIF builds TestNSM's EIF: testinit runs heartbeat and nsm, and sends
// its report to parent port nsmReportPort as well as to the console.
func nsmEIF(t *testing.T, e *testEnv) string {
	t.Helper()
	out := filepath.Join(e.tmp, "test-nsm-report.eif")
	cmdline := fmt.Sprintf("%s nitrovm.test=heartbeat,nsm nitrovm.report=%d", awsCmdline, nsmReportPort)
	cmd := exec.Command(e.nitrovm, "build-eif", "--kernel", e.guestKernel,
		"--cmdline", cmdline, "--ramdisk", e.ramdisk(t), "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nitrovm build-eif: %v\n%s", err, b)
	}
	return out
}

// wantVerify checks the exit status of each "L1TOOLS verify name=N rc=R"
// line in output against want[N].
func wantVerify(t *testing.T, output string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(output, "\n") {
		if i := strings.Index(line, "L1TOOLS verify name="); i >= 0 {
			name, rc, _ := strings.Cut(line[i+len("L1TOOLS verify name="):], " rc=")
			got[name] = strings.TrimSpace(rc)
		}
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("nitrovm attestation verify %s: exit status got %q, want %s\n%s", name, got[name], w, output)
		}
	}
}

// l1Root returns the root certificate printed between nsmRootBegin and
// nsmRootEnd in output, alone in a pool and as itself.
func l1Root(t *testing.T, output string) (*x509.CertPool, *x509.Certificate) {
	t.Helper()
	blk, _ := pem.Decode([]byte(between(output, nsmRootBegin, nsmRootEnd)))
	if blk == nil {
		t.Fatalf("no root certificate PEM in the L1 output:\n%s", output)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("root certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return roots, cert
}

// jsonObject returns s from its first '{' to its last '}'.
func jsonObject(s string) string {
	i, j := strings.Index(s, "{"), strings.LastIndex(s, "}")
	if i < 0 || j < i {
		return s
	}
	return s[i : j+1]
}

// between returns the text of s between the lines begin and end.
func between(s, begin, end string) string {
	_, rest, _ := strings.Cut(s, begin+"\n")
	out, _, _ := strings.Cut(rest, end)
	return out
}

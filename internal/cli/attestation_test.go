package cli

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/attestation"
)

const (
	attTestEIF       = "../../eif/testdata/one-ramdisk.eif"
	attTestSignedEIF = "../../eif/testdata/signed-three-ramdisks.eif"
	attTestTime      = "2026-01-02T03:04:05Z"
	attTestPCR0      = "eb018cb9bf5994acb5097676cb8280d9ae8d7ed0f5239cc1c2a84a2b859a13141e3eff0d3f962255714abed605aae6ef"
)

// runAtt runs nitrovm with NITROVM_STATE_DIR=stateDir.
func runAtt(t *testing.T, stateDir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if k == "NITROVM_STATE_DIR" {
			return stateDir
		}
		return ""
	}}
	code = Run(context.Background(), append([]string{"nitrovm"}, args...), env)
	return code, out.String(), errb.String()
}

// attSetup issues a document with a nonce and returns the state dir, the
// exported root and the document path.
func attSetup(t *testing.T, extra ...string) (state, root, doc string) {
	t.Helper()
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	root = filepath.Join(dir, "root.pem")
	doc = filepath.Join(dir, "doc.cbor")
	args := append([]string{"attestation", "issue", "--eif-path", attTestEIF, "--nonce", "0a0b", "--user-data", "cafe",
		"--parent-role", "arn:aws:iam::123456789012:role/Webserver", "--parent-id", "i-0123456789abcdef0",
		"--seed", "cli", "--time", attTestTime, "--out", doc}, extra...)
	if code, out, errOut := runAtt(t, state, args...); code != 0 {
		t.Fatalf("issue: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	if code, _, errOut := runAtt(t, state, "ca", "export", "--out", root); code != 0 {
		t.Fatalf("ca export: exit %d: %s", code, errOut)
	}
	return state, root, doc
}

func TestAttestationIssueVerify(t *testing.T) {
	state, root, doc := attSetup(t)
	code, out, errOut := runAtt(t, state, "attestation", "verify", "--root", root, "--time", attTestTime,
		"--nonce", "0a0b", "--pcr", "0="+attTestPCR0,
		"--pcr", "3=78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6", doc)
	if code != 0 {
		t.Fatalf("verify: exit %d, stderr %s", code, errOut)
	}
	var res attVerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify output %q: %v", out, err)
	}
	if !res.Valid || res.Nonce == nil || *res.Nonce != "0a0b" || *res.UserData != "cafe" || res.PublicKey != nil ||
		len(res.PCRs) != 16 || res.PCRs["0"] != attTestPCR0 || len(res.CertificateChain) != 4 ||
		!strings.HasPrefix(res.ModuleID, "i-0123456789abcdef0-enceb018cb9") {
		t.Errorf("got %+v", res)
	}
	// PCR4 computed independently: SHA-384(48 zero bytes || instance ID).
	pcr4 := sha512.Sum384(append(make([]byte, 48), "i-0123456789abcdef0"...))
	if want := hex.EncodeToString(pcr4[:]); res.PCRs["4"] != want {
		t.Errorf("PCR4: got %s, want %s", res.PCRs["4"], want)
	}
	if res.Timestamp != "2026-01-02T03:04:05Z" {
		t.Errorf("timestamp: got %s, want %s", res.Timestamp, attTestTime)
	}

	// The JSON form (no --out) verifies too, and deterministic mode
	// reproduces the document byte for byte.
	code, out, errOut = runAtt(t, state, "attestation", "issue", "--eif-path", attTestEIF, "--nonce", "0a0b", "--user-data", "cafe",
		"--parent-role", "arn:aws:iam::123456789012:role/Webserver", "--parent-id", "i-0123456789abcdef0", "--seed", "cli", "--time", attTestTime)
	if code != 0 {
		t.Fatalf("issue to stdout: exit %d: %s", code, errOut)
	}
	jsonDoc := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(jsonDoc, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runAtt(t, state, "attestation", "verify", "--root", root, "--time", attTestTime, jsonDoc); code != 0 {
		t.Errorf("verify JSON form: exit %d: %s", code, errOut)
	}
	raw, _ := os.ReadFile(doc)
	got := attDocumentBytes([]byte(out))
	if !bytes.Equal(got, raw) {
		t.Error("deterministic mode: got a different document, want identical bytes")
	}
}

func TestAttestationDebugAndSigned(t *testing.T) {
	state, root, doc := attSetup(t, "--debug-mode")
	code, out, _ := runAtt(t, state, "attestation", "verify", "--root", root, "--time", attTestTime, doc)
	if code != 0 {
		t.Fatalf("verify debug document: exit %d", code)
	}
	var res attVerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	zero := strings.Repeat("00", 48)
	for i, v := range res.PCRs {
		if v != zero {
			t.Errorf("debug PCR%s: got %s, want zeros", i, v)
		}
	}

	// A signed EIF puts PCR8 in the document.
	code, out, errOut := runAtt(t, state, "attestation", "issue", "--eif-path", attTestSignedEIF, "--time", attTestTime, "--seed", "x")
	if code != 0 {
		t.Fatalf("issue signed: exit %d: %s", code, errOut)
	}
	d, err := attestation.Parse(attDocumentBytes([]byte(out)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(d.PCRs[8], make([]byte, 48)) {
		t.Error("signed EIF: got zero PCR8, want the signing certificate's measurement")
	}
}

// TestAttestationVerifyFailures checks each tampering fails, with its own
// reason and a non-zero exit.
func TestAttestationVerifyFailures(t *testing.T) {
	state, root, doc := attSetup(t)
	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := func(i int) []byte {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return b
	}
	payloadDoc := write("payload.cbor", flip(bytes.Index(raw, []byte{0xca, 0xfe})))
	sigDoc := write("sig.cbor", flip(len(raw)-3))
	otherState := filepath.Join(dir, "other")
	otherRoot := filepath.Join(dir, "other.pem")
	if code, _, errOut := runAtt(t, otherState, "ca", "export", "--out", otherRoot); code != 0 {
		t.Fatalf("export other: %s", errOut)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"payload byte", []string{"--root", root, "--time", attTestTime, payloadDoc}, "COSE signature does not verify"},
		{"signature byte", []string{"--root", root, "--time", attTestTime, sigDoc}, "COSE signature does not verify"},
		{"wrong root", []string{"--root", otherRoot, "--time", attTestTime, doc}, "signed by unknown authority"},
		{"expired leaf", []string{"--root", root, "--time", "2026-01-02T09:00:00Z", doc}, "expired"},
		{"wrong nonce", []string{"--root", root, "--time", attTestTime, "--nonce", "0a0c", doc}, "nonce mismatch"},
		{"wrong PCR", []string{"--root", root, "--time", attTestTime, "--pcr", "0=00", doc}, "PCR mismatch: PCR0 is"},
		{"garbage", []string{"--root", root, write("garbage", []byte("hello"))}, "malformed document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runAtt(t, state, append([]string{"attestation", "verify"}, tt.args...)...)
			if code == 0 {
				t.Fatalf("got exit 0, want failure")
			}
			if !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("stderr: got %q, want one line containing %q", errOut, tt.want)
			}
			var res attVerifyResult
			if err := json.Unmarshal([]byte(out), &res); err != nil || res.Valid || !strings.Contains(res.Reason, tt.want) {
				t.Errorf("stdout: got %q, want Valid false with reason containing %q", out, tt.want)
			}
		})
	}
}

// TestAttestationUsageErrors covers bad user input: one line, non-zero exit.
func TestAttestationUsageErrors(t *testing.T) {
	state, root, doc := attSetup(t)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("ab", 2100)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"attestation"}, "missing subcommand"},
		{"no eif", []string{"attestation", "issue"}, "--eif-path is required"},
		{"missing eif", []string{"attestation", "issue", "--eif-path", "/nonexistent.eif"}, "E35"},
		{"bad eif", []string{"attestation", "issue", "--eif-path", "../../eif/testdata/bad-crc.eif"}, "E35"},
		{"bad nonce", []string{"attestation", "issue", "--eif-path", attTestEIF, "--nonce", "xyz"}, "invalid --nonce"},
		{"bad user data", []string{"attestation", "issue", "--eif-path", attTestEIF, "--user-data", "1"}, "invalid --user-data"},
		{"bad time", []string{"attestation", "issue", "--eif-path", attTestEIF, "--time", "yesterday"}, "invalid --time"},
		{"missing public key", []string{"attestation", "issue", "--eif-path", attTestEIF, "--public-key", "/nonexistent"}, "read --public-key"},
		{"empty public key", []string{"attestation", "issue", "--eif-path", attTestEIF, "--public-key", empty}, "invalid --public-key"},
		{"too large", []string{"attestation", "issue", "--eif-path", attTestEIF, "--user-data", big, "--nonce", big}, "InputTooLarge"},
		{"unknown flag", []string{"attestation", "issue", "--bogus"}, "unknown flag"},
		{"no root", []string{"attestation", "verify", doc}, "--root is required"},
		{"no doc", []string{"attestation", "verify", "--root", root}, "accepts 1 arg"},
		{"missing root", []string{"attestation", "verify", "--root", "/nonexistent", doc}, "read --root"},
		{"bad root", []string{"attestation", "verify", "--root", notPEM, doc}, "invalid --root"},
		{"missing doc", []string{"attestation", "verify", "--root", root, "/nonexistent"}, "read document"},
		{"bad pcr index", []string{"attestation", "verify", "--root", root, "--pcr", "32=00", doc}, "invalid --pcr"},
		{"bad pcr syntax", []string{"attestation", "verify", "--root", root, "--pcr", "0", doc}, "invalid --pcr"},
		{"bad pcr hex", []string{"attestation", "verify", "--root", root, "--pcr", "0=zz", doc}, "invalid --pcr"},
		{"bad verify nonce", []string{"attestation", "verify", "--root", root, "--nonce", "q", doc}, "invalid --nonce"},
		{"bad verify time", []string{"attestation", "verify", "--root", root, "--time", "x", doc}, "invalid --time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runAtt(t, state, tt.args...)
			if code == 0 {
				t.Fatalf("got exit 0, want failure")
			}
			if !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("got %q, want one line containing %q", errOut, tt.want)
			}
		})
	}
}

func TestAttestationPublicKeyPEM(t *testing.T) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pemFile, []byte("-----BEGIN PUBLIC KEY-----\nAQID\n-----END PUBLIC KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAtt(t, filepath.Join(dir, "s"), "attestation", "issue", "--eif-path", attTestEIF, "--public-key", pemFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	d, err := attestation.Parse(attDocumentBytes([]byte(out)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.PublicKey, []byte{1, 2, 3}; !bytes.Equal(got, want) {
		t.Errorf("public_key: got %x, want %x", got, want)
	}
}

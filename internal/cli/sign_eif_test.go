package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// describeSigned runs describe-eif on path and returns its measurements and
// whether it is signed with a signature that checks.
func describeSigned(t *testing.T, path string) (measurementsJSON, bool) {
	t.Helper()
	code, stdout, stderr := runEIFCmd(t, nil, "describe-eif", "--eif-path", path)
	if code != 0 {
		t.Fatalf("describe-eif %s: exit %d: %s", path, code, stderr)
	}
	var d struct {
		Measurements   measurementsJSON
		IsSigned       bool
		SignatureCheck *bool
	}
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatal(err)
	}
	return d.Measurements, d.IsSigned && d.SignatureCheck != nil && *d.SignatureCheck
}

func TestSignEIF(t *testing.T) {
	dir := t.TempDir()
	out := buildTestEIF(t, dir, 2, "app.eif")
	os.Chmod(out, 0o640)
	plain, signed := describeSigned(t, out)
	if signed || plain.PCR8 != "" {
		t.Fatalf("built EIF is signed: %+v", plain)
	}
	// Through a symbolic link, which must still point at the signed EIF.
	link := filepath.Join(dir, "link.eif")
	os.Symlink(out, link)

	for round := range 2 {
		keyPath, certPath, der := writeSigner(t, t.TempDir())
		code, stdout, stderr := runEIFCmd(t, nil, "sign-eif", "--eif-path", link, "--signing-certificate", certPath, "--private-key", keyPath)
		if code != 0 || !strings.Contains(stderr, "Enclave Image successfully signed.") {
			t.Fatalf("round %d: sign-eif: exit %d: %s", round, code, stderr)
		}
		var got struct{ Measurements measurementsJSON }
		json.Unmarshal([]byte(stdout), &got)
		m, ok := describeSigned(t, out)
		want := plain
		want.PCR8 = refPCR(der)
		if !ok || m != want || got.Measurements != want {
			t.Errorf("round %d: describe-eif after sign-eif: signed %v, %+v; printed %+v; want %+v", round, ok, m, got.Measurements, want)
		}
		if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Errorf("round %d: the link was replaced: %v %v", round, st.Mode(), err)
		}
		if st, _ := os.Stat(out); st.Mode().Perm() != 0o640 {
			t.Errorf("round %d: mode %v, want the EIF's own 0640", round, st.Mode().Perm())
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestSignEIFErrors(t *testing.T) {
	dir := t.TempDir()
	good := buildTestEIF(t, dir, 1, "good.eif")
	keyPath, certPath, _ := writeSigner(t, dir)
	otherKey, _, _ := writeSigner(t, t.TempDir())
	notEIF := filepath.Join(dir, "not.eif")
	os.WriteFile(notEIF, []byte("hello"), 0o644)
	before, _ := os.ReadFile(good)
	badCRC := filepath.Join(dir, "crc.eif")
	b := bytes.Clone(before)
	b[len(b)-1] ^= 1
	os.WriteFile(badCRC, b, 0o644)
	sign := func(extra ...string) []string { return append([]string{"sign-eif"}, extra...) }
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no eif", sign("--signing-certificate", certPath, "--private-key", keyPath), 1, "[ E01 ] --eif-path is required"},
		{"no key", sign("--eif-path", good), 60, "[ E60 ] no signing key"},
		{"certificate alone", sign("--eif-path", good, "--signing-certificate", certPath), 2, "[ E02 ]"},
		{"key alone", sign("--eif-path", good, "--private-key", keyPath), 2, "[ E02 ]"},
		{"missing eif", sign("--eif-path", filepath.Join(dir, "nope.eif"), "--signing-certificate", certPath, "--private-key", keyPath), 19, "[ E19 ]"},
		{"not an eif", sign("--eif-path", notEIF, "--signing-certificate", certPath, "--private-key", keyPath), 35, "[ E35 ]"},
		{"bad CRC", sign("--eif-path", badCRC, "--signing-certificate", certPath, "--private-key", keyPath), 35, "CRC-32 mismatch"},
		{"key of another certificate", sign("--eif-path", good, "--signing-certificate", certPath, "--private-key", otherKey), 60, "does not match the signing certificate"},
		{"KMS key", sign("--eif-path", good, "--signing-certificate", certPath, "--private-key", "arn:aws:kms:us-east-1:123456789012:key/abcd"), 60, "KMS keys are not supported"},
		{"certificate not PEM", sign("--eif-path", good, "--signing-certificate", notEIF, "--private-key", keyPath), 60, "no PEM CERTIFICATE block"},
	} {
		code, stdout, stderr := runEIFCmd(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || stdout != "" || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: got exit %d, stdout %q, stderr %q; want exit %d and one line with %q", tc.name, code, stdout, stderr, tc.code, tc.want)
		}
	}
	if after, _ := os.ReadFile(good); !bytes.Equal(after, before) {
		t.Errorf("a failed sign-eif changed the EIF")
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(tmp) != 0 {
		t.Errorf("a failed sign-eif left %v behind", tmp)
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"explain", "--error-code", "E26"}, 0, "E26 InsufficientMemoryRequested: nitrovm returns it when the memory asked for is below 64 MiB"},
		{[]string{"explain", "--error-code", "e60"}, 0, "E60 EIFSigningError: nitrovm returns it when sign-eif"},
		{[]string{"explain", "--error-code", "4"}, 0, "E04 SocketPairCreationFailure: a nitro-cli error that nitrovm never returns"},
		{[]string{"explain", "--error-code", "E00"}, 0, "E00 UnspecifiedError"},
		{[]string{"explain", "--error-code", "E61"}, 3, `[ E03 ] no such error code "E61"`},
		{[]string{"explain", "--error-code", "E-1"}, 3, "no such error code"},
		{[]string{"explain", "--error-code", "X1"}, 3, "no such error code"},
		{[]string{"explain"}, 1, "[ E01 ] --error-code is required"},
	} {
		code, stdout, stderr := runEIFCmd(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.stderr) || stdout != "" {
			t.Errorf("%v: got exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, tc.code, tc.stderr)
		}
	}
	// Every code nitrovm returns is explained as nitrovm's.
	for n := range nitroCodes {
		if _, ours := nitrovmCauses[n]; ours != strings.Contains(explainCode(n), "nitrovm returns it") {
			t.Errorf("E%02d: explanation %q", n, explainCode(n))
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/nsm"
)

func TestKMSCall(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		env := Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
			if k == "NITROVM_STATE_DIR" {
				return dir
			}
			return ""
		}}
		code := Run(context.Background(), append([]string{"nitrovm"}, args...), env)
		return out.String(), errOut.String(), code
	}
	out, errOut, code := run("kms", "call", "CreateKey", `{"Description":"cli"}`)
	if code != 0 {
		t.Fatalf("CreateKey: status %d, %s", code, errOut)
	}
	var created struct{ KeyMetadata struct{ KeyId string } }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.KeyMetadata.KeyId == "" {
		t.Fatalf("CreateKey output %q: %v", out, err)
	}
	out, errOut, code = run("kms", "call", "Encrypt", `{"KeyId":"`+created.KeyMetadata.KeyId+`","Plaintext":"aGk="}`)
	if code != 0 || !strings.Contains(out, "CiphertextBlob") {
		t.Fatalf("Encrypt: status %d, %s %s", code, out, errOut)
	}
	// A Recipient's document is checked against the local CA's root.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	mod, err := nsm.NewEnclaveModule(nsm.EnclaveConfig{ModuleID: "i-0000000000000000-enc0000000000000001", PCR0: make([]byte, 48), PCR1: make([]byte, 48), PCR2: make([]byte, 48), StateDir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := mod.Attest(nil, nil, spki)
	if err != nil {
		t.Fatal(err)
	}
	rcp := `"Recipient":{"AttestationDocument":"` + base64.StdEncoding.EncodeToString(doc) + `","KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256"}`
	out, errOut, code = run("kms", "call", "GenerateRandom", `{"NumberOfBytes":8,`+rcp+`}`)
	if code != 0 || !strings.Contains(out, "CiphertextForRecipient") {
		t.Fatalf("GenerateRandom with Recipient: status %d, %s %s", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"kms", "call", "Encrypt", `{"KeyId":"alias/none","Plaintext":"aGk="}`}, "NotFoundException: Alias alias/none is not found."},
		{[]string{"kms", "call", "Encrypt", `{`}, "SerializationException"},
		{[]string{"kms", "call", "CreateGrant", `{}`}, "UnsupportedOperationException: CreateGrant: grants are not implemented"},
		{[]string{"kms", "serve", "--listen", ""}, "give --listen or --tls-listen"},
		{[]string{"kms", "serve", "--credentials", "/nonexistent"}, "read --credentials"},
	} {
		_, errOut, code := run(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.msg) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: got status %d, stderr %q, want a one-line error containing %q", tc.args, code, errOut, tc.msg)
		}
	}
}

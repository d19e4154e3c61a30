//go:build e2e

package e2e

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/kms"
)

// TestKMS is the flow of AWS KMS with attestation, end to end: an enclave
// program built on aws-sdk-go-v2/service/kms and hf/nsm (demo/hello, in an
// image built with build-enclave --trust-local-ca) decrypts a secret with
// Decrypt and a Recipient through run-enclave --kms: TLS to
// kms.us-east-1.amazonaws.com over vsock port 8000, checked against the
// image's CA bundle; CiphertextForRecipient opened with its own RSA key.
// A second ciphertext, under a key whose policy names another PCR0, must be
// denied (AccessDeniedException) on the same path.
func TestKMS(t *testing.T) {
	e := setup(t)
	parent := e.goBuild(t, "./demo/parent", "parent")

	// The image, and the EIF trusting this test's CA.
	state := filepath.Join(e.tmp, "state")
	eifPath := e.demoEIF(t, "kms", "nitrovm-e2e/kms:latest", []string{"NITROVM_STATE_DIR=" + state}, "--trust-local-ca")
	m := measureEIF(t, eifPath)

	// The parent's side: two keys in the key store run-enclave --kms will
	// use, one for this PCR0, one for another image's; a secret under each.
	svc, err := kms.OpenLocal(kms.LocalConfig{Dir: filepath.Join(state, "kms"), CADir: filepath.Join(state, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	other := sha512.Sum384([]byte("another enclave image"))
	secret := []byte("the e2e secret: only for this EIF's PCR0")
	allowed := encryptUnderPCR0(t, svc, e.tmp, "allowed", m.PCR0, secret)
	denied := encryptUnderPCR0(t, svc, e.tmp, "denied", other[:], secret)
	sum := sha256.Sum256(secret)

	s := e.newSession(t)
	s.files["/e2e/state/ca/ca.pem"] = filepath.Join(state, "ca", "ca.pem")
	s.files["/e2e/state/kms/"+kms.StateFile] = filepath.Join(state, "kms", kms.StateFile)
	script := fmt.Sprintf(`export NITROVM_STATE_DIR=/e2e/state
mkdir -p /tmp/kms
%s -uds /tmp/kms/v.sock -out /tmp/kms/doc.cbor -timeout 280s -message ping -kms-ciphertext %s -kms-ciphertext %s -- \
	nitrovm run-enclave --eif-path %s --memory 256 --cpu-count 2 --enclave-name kms %s --kms
rc=$?
[ $rc = 0 ] || { for f in $NITROVM_STATE_DIR/logs/*.log; do echo "--- $f"; tail -n 40 "$f"; done; }
exit $rc`, s.file(parent), s.file(allowed), s.file(denied), s.file(eifPath), heartbeatFlag)
	run := s.boot("kms", 5*time.Minute, "sh", "-c", script)
	s.run()
	run.wantExit(t, 0)
	for _, want := range []string{
		"parent: enclave KMS Decrypt 1 with Recipient: secret sha256 " + hex.EncodeToString(sum[:]),
		"parent: enclave KMS Decrypt 2 with Recipient: denied or failed: AccessDeniedException: ",
		`parent: echo over vsock port 5005: sent "ping", got "ping"`,
	} {
		if !strings.Contains(run.output, want) {
			t.Errorf("output lacks %q; output:\n%s", want, run.output)
		}
	}
	t.Logf("kms: enclave decrypted with Recipient and was denied under another PCR0 in %.1fs (L1 time, boot included)", run.seconds)
}

// encryptUnderPCR0 creates a key whose policy allows Decrypt only to
// attestation documents with PCR0 pcr0, encrypts secret under it and
// writes the CiphertextBlob in base64 to a file in dir, returned.
func encryptUnderPCR0(t *testing.T, svc *kms.Service, dir, name string, pcr0, secret []byte) string {
	t.Helper()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
	 {"Sid":"parent","Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Encrypt","kms:DescribeKey"],"Resource":"*"},
	 {"Sid":"enclave","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*",
	  "Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"%s"}}}]}`, hex.EncodeToString(pcr0))
	k, err := svc.CreateKey(&kms.CreateKeyRequest{Description: "e2e " + name, Policy: policy})
	if err != nil {
		t.Fatalf("CreateKey %s: %v", name, err)
	}
	enc, err := svc.Encrypt(&kms.EncryptRequest{KeyId: k.KeyMetadata.Arn, Plaintext: secret})
	if err != nil {
		t.Fatalf("Encrypt %s: %v", name, err)
	}
	p := filepath.Join(dir, name+".ct")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(enc.CiphertextBlob)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

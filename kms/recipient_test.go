package kms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// pcr0Policy allows Decrypt, GenerateDataKey, GenerateDataKeyPair and
// DeriveSharedSecret only to enclaves whose PCR0 is pcr0, and everything
// else (key management, Encrypt) to the account.
func pcr0Policy(pcr0 []byte) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
	 {"Sid":"admin","Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Encrypt","kms:Describe*","kms:Get*","kms:PutKeyPolicy","kms:CreateAlias"],"Resource":"*"},
	 {"Sid":"enclave","Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Decrypt","kms:GenerateDataKey*","kms:DeriveSharedSecret"],"Resource":"*",
	  "Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"%s"}}}]}`, hex.EncodeToString(pcr0))
}

func recipientInfo(doc []byte) *types.RecipientInfo {
	return &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
}

func TestRecipientDecrypt(t *testing.T) {
	k := newTestKMS(t, "")
	enclave := newTestEnclave(t, k.caDir, "app image", false)
	id := createKey(t, k, &awskms.CreateKeyInput{Policy: aws.String(pcr0Policy(enclave.pcr0))})
	enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("the secret")})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(enclave.document(t))})
	if err != nil {
		t.Fatal(err)
	}
	if dec.Plaintext != nil || *dec.KeyId != k.svc.arn("key", id) {
		t.Fatalf("got Plaintext %q KeyId %v, want no Plaintext and the key ARN", dec.Plaintext, dec.KeyId)
	}
	pt, err := OpenEnvelope(dec.CiphertextForRecipient, enclave.priv)
	if err != nil || string(pt) != "the secret" {
		t.Fatalf("OpenEnvelope: got %q, %v, want the secret", pt, err)
	}

	// Without a Recipient, the attestation condition cannot hold.
	_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, ErrAccessDenied, "no statement in the key policy allows it")
	// Another image's enclave is denied.
	other := newTestEnclave(t, k.caDir, "other image", false)
	_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(other.document(t))})
	wantAPIError(t, err, ErrAccessDenied, "not authorized to perform: kms:Decrypt")
	// A debug-mode enclave of the same image has zero PCRs: denied.
	debug := newTestEnclave(t, k.caDir, "app image", true)
	_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(debug.document(t))})
	wantAPIError(t, err, ErrAccessDenied, "not authorized")
	// ... unless the policy names zero PCRs.
	if _, err := k.client.PutKeyPolicy(ctx, &awskms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(pcr0Policy(make([]byte, 48)))}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(debug.document(t))}); err != nil {
		t.Fatalf("debug document under a zero-PCR policy: %v", err)
	}
	// A document signed by a CA this KMS does not trust is refused.
	foreign := newTestEnclave(t, t.TempDir(), "app image", false)
	_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(foreign.document(t))})
	wantAPIError(t, err, ErrAccessDenied, "attestation document rejected: attestation: certificate chain does not verify")
}

func TestRecipientOtherOperations(t *testing.T) {
	k := newTestKMS(t, "")
	enclave := newTestEnclave(t, k.caDir, "app image", false)
	id := createKey(t, k, &awskms.CreateKeyInput{Policy: aws.String(pcr0Policy(enclave.pcr0))})
	doc := enclave.document(t)

	gdk, err := k.client.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(32), Recipient: recipientInfo(doc)})
	if err != nil {
		t.Fatal(err)
	}
	dk, err := OpenEnvelope(gdk.CiphertextForRecipient, enclave.priv)
	if err != nil || gdk.Plaintext != nil || len(dk) != 32 || len(gdk.CiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKey with Recipient: %v, plaintext %v", err, gdk.Plaintext)
	}
	pair, err := k.client.GenerateDataKeyPair(ctx, &awskms.GenerateDataKeyPairInput{KeyId: aws.String(id), KeyPairSpec: types.DataKeyPairSpecEccNistP384, Recipient: recipientInfo(doc)})
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := OpenEnvelope(pair.CiphertextForRecipient, enclave.priv)
	if err != nil || pair.PrivateKeyPlaintext != nil {
		t.Fatalf("GenerateDataKeyPair with Recipient: %v", err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(privDER); err != nil {
		t.Fatalf("opened private key: %v", err)
	}
	rnd, err := k.client.GenerateRandom(ctx, &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(64), Recipient: recipientInfo(doc)})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := OpenEnvelope(rnd.CiphertextForRecipient, enclave.priv); err != nil || len(r) != 64 || rnd.Plaintext != nil {
		t.Fatalf("GenerateRandom with Recipient: %v", err)
	}
}

// rawCall posts body to the KMS with target op and returns the status and
// decoded JSON.
func rawCall(t *testing.T, url, op, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if op != "" {
		req.Header.Set("X-Amz-Target", "TrentService."+op)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("response %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, m
}

// TestRecipientOmitsPlaintext checks the wire: the Plaintext member is
// absent, not null, when CiphertextForRecipient is present.
func TestRecipientOmitsPlaintext(t *testing.T) {
	k := newTestKMS(t, "")
	enclave := newTestEnclave(t, k.caDir, "app image", false)
	id := createKey(t, k, nil)
	doc := base64.StdEncoding.EncodeToString(enclave.document(t))
	rcp := `"Recipient":{"AttestationDocument":"` + doc + `","KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256"}`
	status, m := rawCall(t, k.srv.URL, "GenerateDataKey", `{"KeyId":"`+id+`","KeySpec":"AES_256",`+rcp+`}`)
	if status != 200 {
		t.Fatalf("got status %d %v", status, m)
	}
	for _, f := range []string{"CiphertextBlob", "KeyId", "CiphertextForRecipient"} {
		if _, ok := m[f]; !ok {
			t.Errorf("response lacks %s", f)
		}
	}
	if _, ok := m["Plaintext"]; ok {
		t.Errorf("response has Plaintext, want it omitted")
	}
}

func TestErrors(t *testing.T) {
	k := newTestKMS(t, "")
	enclave := newTestEnclave(t, k.caDir, "app image", false)
	id := createKey(t, k, nil)
	denyID := createKey(t, k, &awskms.CreateKeyInput{Policy: aws.String(`{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Sid":"nodecrypt","Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}]}`)})
	ecID := createKey(t, k, &awskms.CreateKeyInput{Policy: aws.String(`{"Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"one"}}}}`)})
	disabled := createKey(t, k, nil)
	if _, err := k.client.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: aws.String(disabled)}); err != nil {
		t.Fatal(err)
	}
	blob, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), EncryptionContext: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	denyBlob, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(denyID), Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(blob.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	big := make([]byte, MaxAttestationDocumentBytes+1)

	for _, tc := range []struct {
		name      string
		call      func() error
		code, msg string
	}{
		{"not found", func() error {
			_, err := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("00000000-0000-4000-8000-000000000000")})
			return err
		}, ErrNotFound, "does not exist"},
		{"key ARN of another account", func() error {
			_, err := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:us-east-1:999999999999:key/" + id)})
			return err
		}, ErrNotFound, "does not exist"},
		{"key ARN of another region", func() error {
			_, err := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:eu-west-1:" + DefaultAccount + ":key/" + id)})
			return err
		}, ErrNotFound, "does not exist"},
		{"alias not found", func() error {
			_, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/none"), Plaintext: []byte("x")})
			return err
		}, ErrNotFound, "Alias alias/none is not found"},
		{"disabled", func() error {
			_, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(disabled), Plaintext: []byte("x")})
			return err
		}, ErrDisabled, "is disabled"},
		{"tampered ciphertext", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: tampered, EncryptionContext: map[string]string{"a": "b"}})
			return err
		}, ErrInvalidCiphertext, "malformed or was not produced by this KMS"},
		{"wrong encryption context", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob.CiphertextBlob, EncryptionContext: map[string]string{"a": "c"}})
			return err
		}, ErrInvalidCiphertext, "encryption context does not match"},
		{"foreign ciphertext", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: []byte("not a blob at all")})
			return err
		}, ErrInvalidCiphertext, "malformed"},
		{"incorrect key", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{KeyId: aws.String(denyID), CiphertextBlob: blob.CiphertextBlob, EncryptionContext: map[string]string{"a": "b"}})
			return err
		}, ErrIncorrectKey, "does not identify"},
		{"explicit deny", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: denyBlob.CiphertextBlob})
			return err
		}, ErrAccessDenied, `explicit deny in statement "nodecrypt"`},
		{"encryption context condition", func() error {
			_, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(ecID), Plaintext: []byte("x"), EncryptionContext: map[string]string{"app": "two"}})
			return err
		}, ErrAccessDenied, "no statement in the key policy allows it"},
		{"oversized attestation document", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob.CiphertextBlob, Recipient: recipientInfo(big)})
			return err
		}, ErrValidation, "Member must have length between 1 and 262144 (got 262145)"},
		{"garbage attestation document", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob.CiphertextBlob, Recipient: recipientInfo([]byte{0x84, 0x01})})
			return err
		}, ErrAccessDenied, "attestation document rejected: attestation: malformed document"},
		{"bad key encryption algorithm", func() error {
			_, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob.CiphertextBlob, Recipient: &types.RecipientInfo{AttestationDocument: enclave.document(t), KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_1"}})
			return err
		}, ErrValidation, "recipient.keyEncryptionAlgorithm"},
		{"grants refused", func() error {
			_, err := k.client.CreateGrant(ctx, &awskms.CreateGrantInput{KeyId: aws.String(id), GranteePrincipal: aws.String("x"), Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
			return err
		}, ErrUnsupportedOperation, "grants are not implemented"},
		{"multi-region refused", func() error {
			_, err := k.client.CreateKey(ctx, &awskms.CreateKeyInput{MultiRegion: aws.Bool(true)})
			return err
		}, ErrUnsupportedOperation, "multi-region keys are not implemented"},
		{"replicate refused", func() error {
			_, err := k.client.ReplicateKey(ctx, &awskms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("eu-west-1")})
			return err
		}, ErrUnsupportedOperation, "multi-region keys are not implemented"},
		{"custom key store refused", func() error {
			_, err := k.client.CreateCustomKeyStore(ctx, &awskms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("x")})
			return err
		}, ErrUnsupportedOperation, "custom key stores"},
		{"key in a custom key store refused", func() error {
			_, err := k.client.CreateKey(ctx, &awskms.CreateKeyInput{CustomKeyStoreId: aws.String("cks-1234567890abcdef0"), Origin: types.OriginTypeAwsCloudhsm})
			return err
		}, ErrUnsupportedOperation, "custom key stores (CloudHSM, external) are not implemented"},
		{"imported key material refused", func() error {
			_, err := k.client.CreateKey(ctx, &awskms.CreateKeyInput{Origin: types.OriginTypeExternal})
			return err
		}, ErrUnsupportedOperation, "Origin EXTERNAL is not implemented"},
		{"GenerateRandom in a custom key store refused", func() error {
			_, err := k.client.GenerateRandom(ctx, &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(8), CustomKeyStoreId: aws.String("cks-1234567890abcdef0")})
			return err
		}, ErrUnsupportedOperation, "custom key stores"},
		{"disabled key, Decrypt", func() error {
			id := createKey(t, k, nil)
			enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
			if err != nil {
				return err
			}
			k.client.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: aws.String(id)})
			_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(enclave.document(t))})
			return err
		}, ErrDisabled, "is disabled"},
		{"malformed policy", func() error {
			_, err := k.client.PutKeyPolicy(ctx, &awskms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(`{"Statement":[{"Effect":"Allow","Action":"kms:*","Condition":{"NumericEquals":{"kms:EncryptionContext:a":"1"}}}]}`)})
			return err
		}, ErrMalformedPolicy, `condition operator "NumericEquals" is not supported`},
		{"wrong key usage", func() error {
			_, err := k.client.Sign(ctx, &awskms.SignInput{KeyId: aws.String(id), Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
			return err
		}, ErrInvalidKeyUsage, "ENCRYPT_DECRYPT which is not valid for Sign"},
		{"plaintext too large", func() error {
			_, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: make([]byte, 4097)})
			return err
		}, ErrValidation, "want 1..4096"},
		{"alias exists", func() error {
			k.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/dup"), TargetKeyId: aws.String(id)})
			_, err := k.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/dup"), TargetKeyId: aws.String(id)})
			return err
		}, ErrAlreadyExists, "already exists"},
		{"reserved alias", func() error {
			_, err := k.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/aws/s3"), TargetKeyId: aws.String(id)})
			return err
		}, ErrInvalidAliasName, "must not begin with alias/aws/"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantAPIError(t, tc.call(), tc.code, tc.msg) })
	}
}

func TestWireErrors(t *testing.T) {
	k := newTestKMS(t, "")
	for _, tc := range []struct {
		name, op, body string
		typ, msg       string
	}{
		{"bad JSON", "Encrypt", `{"KeyId":`, ErrSerialization, "not valid JSON"},
		{"wrong JSON type", "Encrypt", `{"Plaintext":5}`, ErrSerialization, "not valid JSON"},
		{"unknown operation", "FlyToTheMoon", `{}`, ErrUnsupportedOperation, `operation "FlyToTheMoon" is not supported`},
		{"no target", "", `{}`, ErrUnknownOperation, "does not name a TrentService operation"},
		{"oversized body", "Encrypt", `{"KeyId":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, ErrValidation, "request body exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := rawCall(t, k.srv.URL, tc.op, tc.body)
			if status != 400 || m["__type"] != tc.typ || !strings.Contains(fmt.Sprint(m["message"]), tc.msg) {
				t.Fatalf("got %d %v, want 400 %s containing %q", status, m, tc.typ, tc.msg)
			}
		})
	}
}

// TestEnvelopeStructure checks the byte layout AWS's C SDK requires: the
// four outer elements indefinite, versions 2, the exact headers of KMS.md.
func TestEnvelopeStructure(t *testing.T) {
	priv := sharedRSA()
	spki, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	plain := bytes.Repeat([]byte{0x5a}, 32)
	b, err := SealEnvelope(randReader(), &priv.PublicKey, spki, plain)
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := hex.DecodeString("3080" + "06092a864886f70d010703" + "a080" + "3080" + "020102" + "31")
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("envelope starts % x, want % x", b[:len(prefix)], prefix)
	}
	if !bytes.HasSuffix(b, make([]byte, 10)) { // [0] content EOC + four outer EOCs
		t.Fatalf("envelope ends % x, want ten zero bytes", b[len(b)-10:])
	}
	ski := SubjectKeyID(spki)
	oaep, _ := hex.DecodeString("303c06092a864886f70d010107302fa00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500048201")
	ridAndAlg := append(append([]byte{0x80, 0x20}, ski...), oaep...)
	if !bytes.Contains(b, ridAndAlg) {
		t.Fatal("envelope lacks rid [0] SHA-256(SPKI) followed by the RSAES-OAEP SHA-256/MGF1-SHA-256 AlgorithmIdentifier and a 256-byte key")
	}
	contentHdr, _ := hex.DecodeString("308006092a864886f70d010701301d060960864801650304012a0410")
	if !bytes.Contains(b, contentHdr) {
		t.Fatal("envelope lacks the indefinite EncryptedContentInfo with AES-256-CBC and a 16-byte IV")
	}
	e, err := ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Indefinite != [4]bool{true, true, true, true} {
		t.Fatalf("got indefinite lengths %v, want all four outer elements indefinite", e.Indefinite)
	}
	if e.Version != 2 || e.RecipientVersion != 2 || len(e.Ciphertext) != 48 || !bytes.Equal(e.SubjectKeyID, ski) {
		t.Fatalf("got versions %d/%d, ciphertext %d bytes, want 2/2 and 48 bytes (32-byte key, PKCS#7)", e.Version, e.RecipientVersion, len(e.Ciphertext))
	}
	if pt, err := e.Open(priv); err != nil || !bytes.Equal(pt, plain) {
		t.Fatalf("Open: %v", err)
	}
}

// TestEnvelopeOpenSSL decrypts CiphertextForRecipient with OpenSSL, which
// shares no code with ours.
func TestEnvelopeOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed")
	}
	k := newTestKMS(t, "")
	enclave := newTestEnclave(t, k.caDir, "app image", false)
	id := createKey(t, k, nil)
	secret := []byte("a secret for openssl, longer than one AES block")
	enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: secret})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, Recipient: recipientInfo(enclave.document(t))})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyDER, _ := x509.MarshalPKCS8PrivateKey(enclave.priv)
	keyPath, envPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "env.der")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(envPath, dec.CiphertextForRecipient, 0o600)
	out, err := exec.Command(openssl, "cms", "-decrypt", "-inform", "DER", "-in", envPath, "-inkey", keyPath).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("openssl cms -decrypt: %v: %s", err, stderr)
	}
	if !bytes.Equal(out, secret) {
		t.Fatalf("openssl decrypted %q, want %q", out, secret)
	}
}

// TestRecipientDeriveSharedSecret covers the fifth Recipient operation and
// the refusal of a Recipient by the WithoutPlaintext operations.
func TestRecipientDeriveSharedSecret(t *testing.T) {
	k := newTestKMS(t, "")
	enclave := newTestEnclave(t, k.caDir, "app image", false)
	pol := strings.Replace(pcr0Policy(enclave.pcr0), `"kms:PutKeyPolicy"`, `"kms:PutKeyPolicy","kms:GenerateDataKeyWithoutPlaintext"`, 1)
	eid := createKey(t, k, &awskms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeKeyAgreement, Policy: aws.String(pol)})
	peer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	peerDER, _ := x509.MarshalPKIXPublicKey(&peer.PublicKey)
	in := &awskms.DeriveSharedSecretInput{KeyId: aws.String(eid), KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: peerDER}
	_, err := k.client.DeriveSharedSecret(ctx, in)
	wantAPIError(t, err, ErrAccessDenied, "no statement in the key policy allows it")
	in.Recipient = recipientInfo(enclave.document(t))
	ss, err := k.client.DeriveSharedSecret(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := OpenEnvelope(ss.CiphertextForRecipient, enclave.priv)
	if err != nil || ss.SharedSecret != nil || len(secret) != 32 {
		t.Fatalf("DeriveSharedSecret with Recipient: %v, SharedSecret %x, %d-byte secret", err, ss.SharedSecret, len(secret))
	}
	if !bytes.Equal(secret, peerSecret(t, k, eid, peer)) {
		t.Fatal("DeriveSharedSecret: the recipient's secret differs from the peer's ECDH")
	}

	// The WithoutPlaintext operations take no Recipient (their SDK inputs
	// have none: send the member on the wire).
	sym := createKey(t, k, nil)
	doc := base64.StdEncoding.EncodeToString(enclave.document(t))
	rcp := `"Recipient":{"AttestationDocument":"` + doc + `","KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256"}`
	for _, op := range []string{"GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPairWithoutPlaintext"} {
		status, m := rawCall(t, k.srv.URL, op, `{"KeyId":"`+sym+`","KeySpec":"AES_256","KeyPairSpec":"ECC_NIST_P256",`+rcp+`}`)
		if status != 400 || m["__type"] != ErrValidation || !strings.Contains(fmt.Sprint(m["message"]), "takes no Recipient") {
			t.Errorf("%s with Recipient: got %d %v, want 400 %s", op, status, m, ErrValidation)
		}
	}
}

package kms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func createKey(t *testing.T, k *testKMS, in *awskms.CreateKeyInput) string {
	t.Helper()
	if in == nil {
		in = &awskms.CreateKeyInput{}
	}
	out, err := k.client.CreateKey(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.KeyId
}

func TestSymmetricRoundTrip(t *testing.T) {
	k := newTestKMS(t, "")
	id := createKey(t, k, &awskms.CreateKeyInput{Description: aws.String("test key")})
	if _, err := k.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	ec := map[string]string{"purpose": "test"}
	enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("hello"), EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if *enc.KeyId != k.svc.arn("key", id) {
		t.Fatalf("got KeyId %s, want the key ARN", *enc.KeyId)
	}
	// No KeyId: the blob names the key.
	dec, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if string(dec.Plaintext) != "hello" || *dec.KeyId != *enc.KeyId || dec.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Fatalf("got %q %s %s, want hello, the key, SYMMETRIC_DEFAULT", dec.Plaintext, *dec.KeyId, dec.EncryptionAlgorithm)
	}
	// Every way of naming the key works.
	for _, name := range []string{id, "alias/app", k.svc.arn("key", id), k.svc.aliasArn("alias/app")} {
		if _, err := k.client.Decrypt(ctx, &awskms.DecryptInput{KeyId: aws.String(name), CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}); err != nil {
			t.Fatalf("Decrypt with KeyId %s: %v", name, err)
		}
	}
	// ReEncrypt to a second key.
	id2 := createKey(t, k, nil)
	re, err := k.client.ReEncrypt(ctx, &awskms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: aws.String(id2)})
	if err != nil {
		t.Fatal(err)
	}
	dec, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: re.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "hello" || *dec.KeyId != k.svc.arn("key", id2) {
		t.Fatalf("decrypt re-encrypted: got %q, %v", dec.Plaintext, err)
	}
	// Describe, list.
	d, err := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/app")})
	if err != nil || *d.KeyMetadata.KeyId != id || d.KeyMetadata.KeyState != types.KeyStateEnabled || *d.KeyMetadata.Description != "test key" || d.KeyMetadata.CreationDate == nil {
		t.Fatalf("DescribeKey: got %+v, %v", d, err)
	}
	lk, err := k.client.ListKeys(ctx, &awskms.ListKeysInput{Limit: aws.Int32(1)})
	if err != nil || len(lk.Keys) != 1 || !lk.Truncated {
		t.Fatalf("ListKeys page 1: got %+v, %v", lk, err)
	}
	lk2, err := k.client.ListKeys(ctx, &awskms.ListKeysInput{Marker: lk.NextMarker})
	if err != nil || len(lk2.Keys) != 1 || lk2.Truncated || *lk2.Keys[0].KeyId == *lk.Keys[0].KeyId {
		t.Fatalf("ListKeys page 2: got %+v, %v", lk2, err)
	}
	la, err := k.client.ListAliases(ctx, &awskms.ListAliasesInput{KeyId: aws.String(id)})
	if err != nil || len(la.Aliases) != 1 || *la.Aliases[0].AliasName != "alias/app" || *la.Aliases[0].TargetKeyId != id {
		t.Fatalf("ListAliases: got %+v, %v", la, err)
	}
}

func TestDataKeys(t *testing.T) {
	k := newTestKMS(t, "")
	id := createKey(t, k, nil)
	gdk, err := k.client.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	if err != nil || len(gdk.Plaintext) != 32 {
		t.Fatalf("GenerateDataKey: %v, %d bytes", err, len(gdk.Plaintext))
	}
	dec, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: gdk.CiphertextBlob})
	if err != nil || !bytes.Equal(dec.Plaintext, gdk.Plaintext) {
		t.Fatalf("Decrypt data key: %v", err)
	}
	wp, err := k.client.GenerateDataKeyWithoutPlaintext(ctx, &awskms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(id), NumberOfBytes: aws.Int32(20)})
	if err != nil {
		t.Fatal(err)
	}
	if dec, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: wp.CiphertextBlob}); err != nil || len(dec.Plaintext) != 20 {
		t.Fatalf("Decrypt data key without plaintext: %v", err)
	}
	pair, err := k.client.GenerateDataKeyPair(ctx, &awskms.GenerateDataKeyPairInput{KeyId: aws.String(id), KeyPairSpec: types.DataKeyPairSpecEccNistP256})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(pair.PrivateKeyPlaintext)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(priv.(*ecdsa.PrivateKey).Public())
	if !bytes.Equal(pubDER, pair.PublicKey) {
		t.Fatal("GenerateDataKeyPair: public key does not match the private key")
	}
	if dec, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: pair.PrivateKeyCiphertextBlob}); err != nil || !bytes.Equal(dec.Plaintext, pair.PrivateKeyPlaintext) {
		t.Fatalf("Decrypt private key: %v", err)
	}
	pwp, err := k.client.GenerateDataKeyPairWithoutPlaintext(ctx, &awskms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: aws.String(id), KeyPairSpec: types.DataKeyPairSpecRsa2048})
	if err != nil || len(pwp.PublicKey) == 0 || len(pwp.PrivateKeyCiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyPairWithoutPlaintext: %v", err)
	}
	r1, err := k.client.GenerateRandom(ctx, &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(32)})
	if err != nil || len(r1.Plaintext) != 32 {
		t.Fatalf("GenerateRandom: %v", err)
	}
}

func TestAsymmetricKeys(t *testing.T) {
	k := newTestKMS(t, "")
	msg := []byte("message to sign")
	for _, tc := range []struct {
		spec types.KeySpec
		alg  types.SigningAlgorithmSpec
	}{
		{types.KeySpecEccNistP256, types.SigningAlgorithmSpecEcdsaSha256},
		{types.KeySpecEccNistP384, types.SigningAlgorithmSpecEcdsaSha384},
		{types.KeySpecRsa2048, types.SigningAlgorithmSpecRsassaPssSha256},
		{types.KeySpecRsa2048, types.SigningAlgorithmSpecRsassaPkcs1V15Sha512},
	} {
		id := createKey(t, k, &awskms.CreateKeyInput{KeySpec: tc.spec, KeyUsage: types.KeyUsageTypeSignVerify})
		sig, err := k.client.Sign(ctx, &awskms.SignInput{KeyId: aws.String(id), Message: msg, SigningAlgorithm: tc.alg})
		if err != nil {
			t.Fatalf("%s %s Sign: %v", tc.spec, tc.alg, err)
		}
		v, err := k.client.Verify(ctx, &awskms.VerifyInput{KeyId: aws.String(id), Message: msg, Signature: sig.Signature, SigningAlgorithm: tc.alg})
		if err != nil || !v.SignatureValid {
			t.Fatalf("%s %s Verify: %v", tc.spec, tc.alg, err)
		}
		_, err = k.client.Verify(ctx, &awskms.VerifyInput{KeyId: aws.String(id), Message: []byte("other"), Signature: sig.Signature, SigningAlgorithm: tc.alg})
		wantAPIError(t, err, ErrInvalidSignature, "does not verify")
		// The public key verifies outside KMS too (ECDSA case).
		pk, err := k.client.GetPublicKey(ctx, &awskms.GetPublicKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		if tc.spec == types.KeySpecEccNistP256 {
			pub, _ := x509.ParsePKIXPublicKey(pk.PublicKey)
			d := sha256.Sum256(msg)
			if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig.Signature) {
				t.Fatal("ECDSA signature does not verify with GetPublicKey's key")
			}
		}
	}
	// RSA encryption.
	id := createKey(t, k, &awskms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("rsa"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := k.client.Decrypt(ctx, &awskms.DecryptInput{KeyId: aws.String(id), CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	if err != nil || string(dec.Plaintext) != "rsa" {
		t.Fatalf("RSA Decrypt: %v", err)
	}
	// HMAC.
	hid := createKey(t, k, &awskms.CreateKeyInput{KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	mac, err := k.client.GenerateMac(ctx, &awskms.GenerateMacInput{KeyId: aws.String(hid), Message: msg, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := k.client.VerifyMac(ctx, &awskms.VerifyMacInput{KeyId: aws.String(hid), Message: msg, Mac: mac.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	if err != nil || !vm.MacValid {
		t.Fatalf("VerifyMac: %v", err)
	}
	_, err = k.client.VerifyMac(ctx, &awskms.VerifyMacInput{KeyId: aws.String(hid), Message: []byte("x"), Mac: mac.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	wantAPIError(t, err, ErrInvalidMac, "does not verify")
	// ECDH.
	eid := createKey(t, k, &awskms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeKeyAgreement})
	peer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	peerDER, _ := x509.MarshalPKIXPublicKey(&peer.PublicKey)
	ss, err := k.client.DeriveSharedSecret(ctx, &awskms.DeriveSharedSecretInput{KeyId: aws.String(eid), KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: peerDER})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ss.SharedSecret, peerSecret(t, k, eid, peer)) {
		t.Fatal("DeriveSharedSecret: secret differs from the peer's ECDH")
	}
}

// peerSecret is the ECDH secret peer computes with the public key of KMS
// key id.
func peerSecret(t *testing.T, k *testKMS, id string, peer *ecdsa.PrivateKey) []byte {
	t.Helper()
	kpub, err := k.client.GetPublicKey(ctx, &awskms.GetPublicKeyInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := x509.ParsePKIXPublicKey(kpub.PublicKey)
	kp, _ := p.(*ecdsa.PublicKey).ECDH()
	pe, _ := peer.ECDH()
	want, _ := pe.ECDH(kp)
	return want
}

// TestPoliciesAndAliases covers GetKeyPolicy, PutKeyPolicy and DeleteAlias.
func TestPoliciesAndAliases(t *testing.T) {
	k := newTestKMS(t, "")
	pol := `{"Version":"2012-10-17","Statement":[{"Sid":"all","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}`
	id := createKey(t, k, &awskms.CreateKeyInput{Policy: aws.String(pol)})
	got, err := k.client.GetKeyPolicy(ctx, &awskms.GetKeyPolicyInput{KeyId: aws.String(id)})
	if err != nil || *got.Policy != pol || *got.PolicyName != "default" {
		t.Fatalf("GetKeyPolicy: got %v, %v, want the policy given to CreateKey", got, err)
	}
	noGet := `{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:GetKeyPolicy","Resource":"*"}]}`
	if _, err := k.client.PutKeyPolicy(ctx, &awskms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(noGet)}); err != nil {
		t.Fatal(err)
	}
	_, err = k.client.GetKeyPolicy(ctx, &awskms.GetKeyPolicyInput{KeyId: aws.String(id)})
	wantAPIError(t, err, ErrAccessDenied, "kms:GetKeyPolicy")
	_, err = k.client.GetKeyPolicy(ctx, &awskms.GetKeyPolicyInput{KeyId: aws.String(id), PolicyName: aws.String("other")})
	wantAPIError(t, err, ErrNotFound, "")
	if _, err := k.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/gone"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.client.DeleteAlias(ctx, &awskms.DeleteAliasInput{AliasName: aws.String("alias/gone")}); err != nil {
		t.Fatal(err)
	}
	_, err = k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/gone")})
	wantAPIError(t, err, ErrNotFound, "alias/gone")
	_, err = k.client.DeleteAlias(ctx, &awskms.DeleteAliasInput{AliasName: aws.String("alias/gone")})
	wantAPIError(t, err, ErrNotFound, "alias/gone")
}

func TestKeyStates(t *testing.T) {
	k := newTestKMS(t, "")
	id := createKey(t, k, nil)
	enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.client.DisableKey(ctx, &awskms.DisableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, ErrDisabled, "is disabled")
	if _, err := k.client.EnableKey(ctx, &awskms.EnableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil {
		t.Fatal(err)
	}
	sd, err := k.client.ScheduleKeyDeletion(ctx, &awskms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)})
	if err != nil || sd.KeyState != types.KeyStatePendingDeletion || *sd.PendingWindowInDays != 7 {
		t.Fatalf("ScheduleKeyDeletion: %+v, %v", sd, err)
	}
	_, err = k.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, ErrInvalidState, "pending deletion")
	if _, err := k.client.CancelKeyDeletion(ctx, &awskms.CancelKeyDeletionInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	d, _ := k.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(id)})
	if d.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Fatalf("got state %s after CancelKeyDeletion, want Disabled", d.KeyMetadata.KeyState)
	}
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kms")
	k := newTestKMS(t, dir)
	id := createKey(t, k, nil)
	if _, err := k.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/p"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	enc, err := k.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("persisted")})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, StateFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != StateFile && e.Name() != lockFile {
			t.Errorf("state directory holds %s, want only %s and %s", e.Name(), StateFile, lockFile)
		}
	}
	k2 := newTestKMS(t, dir)
	dec, err := k2.client.Decrypt(ctx, &awskms.DecryptInput{KeyId: aws.String("alias/p"), CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "persisted" {
		t.Fatalf("Decrypt after reopening: %v", err)
	}
}

// TestSharedStateDir runs two services on one state directory, as
// "kms serve" and a "run-enclave --kms" supervisor do: each sees the other's
// keys and neither overwrites the other's changes.
func TestSharedStateDir(t *testing.T) {
	dir := t.TempDir()
	a, b := newTestKMS(t, dir), newTestKMS(t, dir)
	id := createKey(t, a, nil)
	enc, err := a.client.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("shared")})
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := b.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil || string(dec.Plaintext) != "shared" {
		t.Fatalf("second service decrypting the first's ciphertext: %v", err)
	}
	if _, err := b.client.CreateAlias(ctx, &awskms.CreateAliasInput{AliasName: aws.String("alias/b"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	id2 := createKey(t, a, nil)
	if _, err := a.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String("alias/b")}); err != nil {
		t.Fatalf("first service lost the second's alias: %v", err)
	}
	if _, err := b.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(id2)}); err != nil {
		t.Fatalf("second service does not see the first's new key: %v", err)
	}
	// A policy change by one is enforced by the other.
	if _, err := a.client.PutKeyPolicy(ctx, &awskms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(`{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError(t, err, ErrAccessDenied, "explicit deny")
}

package kms

import (
	"bytes"
	"crypto/x509"
	"testing"
)

// FuzzParseEnvelope feeds arbitrary bytes to the BER envelope decoder: it
// must return an error or an envelope, never panic, and an envelope it
// accepts must re-encode (with our layout) to something it accepts again.
func FuzzParseEnvelope(f *testing.F) {
	priv := sharedRSA()
	spki, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	for _, n := range []int{0, 1, 32, 100} {
		b, err := SealEnvelope(randReader(), &priv.PublicKey, spki, bytes.Repeat([]byte{1}, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x80, 0x30, 0x80, 0x30, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		re := encodeEnvelope(e.SubjectKeyID, e.EncryptedKey, e.IV, e.Ciphertext)
		e2, err := ParseEnvelope(re)
		if err != nil {
			t.Fatalf("re-encoded envelope does not parse: %v", err)
		}
		if !bytes.Equal(e2.Ciphertext, e.Ciphertext) || !bytes.Equal(e2.EncryptedKey, e.EncryptedKey) {
			t.Fatal("re-encoded envelope differs")
		}
		e.Open(priv) // must not panic
	})
}

// FuzzPolicy feeds arbitrary documents to the policy parser and evaluates
// what it accepts.
func FuzzPolicy(f *testing.F) {
	f.Add(DefaultPolicy(DefaultAccount))
	f.Add(pcr0Policy(make([]byte, 48)))
	f.Add(`{"Statement":{"Effect":"Deny","Action":"kms:*a*a*a*b","Resource":"*"}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := ParsePolicy(doc)
		if err != nil {
			return
		}
		p.Allows(RequestContext{Action: "kms:Decrypt", Resource: "arn:aws:kms:us-east-1:1:key/x",
			Values: map[string]string{"kms:recipientattestation:imagesha384": "00", "kms:encryptioncontext:a": "b"}})
	})
}

// FuzzCiphertextBlob feeds arbitrary blobs to the symmetric blob decoder.
func FuzzCiphertextBlob(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	b, _ := sealBlob(randReader(), "k", key, []byte("x"), map[string]string{"a": "b"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		blobKeyID(b)
		openBlob(key, b, nil)
	})
}

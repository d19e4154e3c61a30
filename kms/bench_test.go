package kms

import (
	"testing"
)

// benchDecrypt measures Decrypt in process, with or without a Recipient
// (a fresh document per request, as from enclaves).
func benchDecrypt(b *testing.B, withRecipient bool) {
	caDir := b.TempDir()
	svc, err := New(Options{Dir: b.TempDir(), Roots: roots(b, caDir)})
	if err != nil {
		b.Fatal(err)
	}
	enclave := newTestEnclave(b, caDir, "app image", false)
	k, err := svc.CreateKey(&CreateKeyRequest{Policy: pcr0Policy(enclave.pcr0)})
	if err != nil {
		b.Fatal(err)
	}
	enc, err := svc.Encrypt(&EncryptRequest{KeyId: k.KeyMetadata.KeyId, Plaintext: make([]byte, 32)})
	if err != nil {
		b.Fatal(err)
	}
	docs := make([][]byte, 16)
	for i := range docs {
		docs[i] = enclave.document(b)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := &DecryptRequest{CiphertextBlob: enc.CiphertextBlob}
		if withRecipient {
			req.Recipient = &RecipientInfo{AttestationDocument: docs[i%len(docs)], KeyEncryptionAlgorithm: AlgOAEPSHA256}
		}
		if _, err := svc.Decrypt(req); err != nil && withRecipient {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkDecrypt(b *testing.B)          { benchDecrypt(b, false) }
func BenchmarkDecryptRecipient(b *testing.B) { benchDecrypt(b, true) }

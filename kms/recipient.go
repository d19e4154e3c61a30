package kms

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nitrovm/nitrovm/attestation"
)

// MaxAttestationDocumentBytes is KMS's limit on RecipientInfo's
// AttestationDocument (API reference, RecipientInfo: length 1..262144).
const MaxAttestationDocumentBytes = 262144

// RecipientInfo is the Recipient request member.
type RecipientInfo struct {
	AttestationDocument    []byte `json:",omitempty"`
	KeyEncryptionAlgorithm string `json:",omitempty"`
}

// recipient is a verified Recipient.
type recipient struct {
	pub     *rsa.PublicKey
	spkiDER []byte
	pcrs    map[int][]byte
}

// verifyRecipient checks r: the document must verify against the trusted
// roots (structure, ES384, chain, signature: attestation.Verify) and carry
// an RSA public_key. A nil r returns nil.
func (s *Service) verifyRecipient(r *RecipientInfo) (*recipient, error) {
	if r == nil {
		return nil, nil
	}
	if r.KeyEncryptionAlgorithm != AlgOAEPSHA256 {
		return nil, errorf(ErrValidation, "1 validation error detected: Value '%s' at 'recipient.keyEncryptionAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256]", r.KeyEncryptionAlgorithm)
	}
	if n := len(r.AttestationDocument); n == 0 || n > MaxAttestationDocumentBytes {
		return nil, errorf(ErrValidation, "1 validation error detected: Value at 'recipient.attestationDocument' failed to satisfy constraint: Member must have length between 1 and %d (got %d)", MaxAttestationDocumentBytes, n)
	}
	if s.roots == nil {
		return nil, errorf(ErrAccessDenied, "Recipient: this KMS trusts no attestation root")
	}
	res, err := attestation.Verify(r.AttestationDocument, attestation.VerifyOptions{Roots: s.roots, CurrentTime: s.now(), Chains: &s.chains})
	if err != nil {
		return nil, errorf(ErrAccessDenied, "Recipient: attestation document rejected: %v", err)
	}
	d := res.Document
	if len(d.PublicKey) == 0 {
		return nil, errorf(ErrValidation, "Recipient: attestation document has no public_key")
	}
	pk, err := x509.ParsePKIXPublicKey(d.PublicKey)
	if err != nil {
		return nil, errorf(ErrValidation, "Recipient: attestation document public_key is not a DER SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := pk.(*rsa.PublicKey)
	if !ok {
		return nil, errorf(ErrValidation, "Recipient: attestation document public_key is %T, want an RSA key", pk)
	}
	return &recipient{pub: pub, spkiDER: d.PublicKey, pcrs: d.PCRs}, nil
}

// conditionValues returns the attestation condition keys of a verified
// recipient, lower-cased, values lower-case hex.
func (r *recipient) conditionValues(into map[string]string) {
	if r == nil {
		return
	}
	for i, v := range r.pcrs {
		into[strings.ToLower(CondPCRPrefix)+strconv.Itoa(i)] = hex.EncodeToString(v)
	}
	if v, ok := r.pcrs[0]; ok {
		into[strings.ToLower(CondImageSha384)] = hex.EncodeToString(v)
	}
}

// seal returns CiphertextForRecipient for plaintext.
func (r *recipient) seal(rnd io.Reader, plaintext []byte) ([]byte, error) {
	b, err := SealEnvelope(rnd, r.pub, r.spkiDER, plaintext)
	if err != nil {
		return nil, errorf(ErrInternal, "%v", err)
	}
	return b, nil
}

// now returns the service's clock.
func (s *Service) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

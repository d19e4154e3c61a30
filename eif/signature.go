package eif

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Signature is the decoded first PCR signature of an EIF's signature
// section (EifSignature = Vec<PcrSignature> in image-format src/defs).
type Signature struct {
	CertificatePEM []byte            // signing_certificate as stored (PEM)
	CertificateDER []byte            // its DER bytes, the input of PCR8
	Certificate    *x509.Certificate // parsed certificate
	COSESign1      []byte            // signature: an untagged COSE_Sign1 over the PCR0 payload
}

// pcrSignature is PcrSignature. serde encodes each Vec<u8> as a CBOR array
// of small integers; decoding accepts that or a byte string.
type pcrSignature struct {
	SigningCertificate []byte `cbor:"signing_certificate"`
	Signature          []byte `cbor:"signature"`
}

// pcrSignatureWire is pcrSignature as serde_cbor writes it: byte vectors as
// arrays of unsigned integers.
type pcrSignatureWire struct {
	SigningCertificate []uint16 `cbor:"signing_certificate"`
	Signature          []uint16 `cbor:"signature"`
}

// pcrInfo is PcrInfo, the COSE_Sign1 payload: {"register_index": 0,
// "register_value": [PCR0 bytes as integers]}.
type pcrInfo struct {
	RegisterIndex int32  `cbor:"register_index"`
	RegisterValue []byte `cbor:"register_value"`
}

type pcrInfoWire struct {
	RegisterIndex int32    `cbor:"register_index"`
	RegisterValue []uint16 `cbor:"register_value"`
}

func widen(b []byte) []uint16 {
	w := make([]uint16, len(b))
	for i, v := range b {
		w[i] = uint16(v)
	}
	return w
}

// signaturePayload returns the bytes nitro-cli signs for PCR index idx.
func signaturePayload(idx int32, value []byte) ([]byte, error) {
	return cbor.Marshal(pcrInfoWire{RegisterIndex: idx, RegisterValue: widen(value)})
}

// Signature decodes the signature section. It returns an error if the EIF is
// unsigned or the section is malformed.
func (f *File) Signature() (*Signature, error) {
	if f.sig < 0 {
		return nil, errors.New("eif: not signed (no signature section)")
	}
	s := f.sections[f.sig]
	b, err := f.readSection(f.sig, SignatureMaxBytes)
	if err != nil {
		return nil, err
	}
	return decodeSignature(b, s.dataOffset(), f.sig)
}

func decodeSignature(b []byte, off int64, idx int) (*Signature, error) {
	var sigs []pcrSignature
	if err := cbor.Unmarshal(b, &sigs); err != nil {
		return nil, formatErr(off, idx, "signature section is not a CBOR array of PCR signatures: %v", err)
	}
	if len(sigs) == 0 {
		return nil, formatErr(off, idx, "signature section holds no PCR signature")
	}
	block, _ := pem.Decode(sigs[0].SigningCertificate)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, formatErr(off, idx, "signing certificate is not a PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, formatErr(off, idx, "signing certificate: %v", err)
	}
	return &Signature{
		CertificatePEM: sigs[0].SigningCertificate,
		CertificateDER: block.Bytes,
		Certificate:    cert,
		COSESign1:      sigs[0].Signature,
	}, nil
}

// CheckPCR0 verifies the COSE_Sign1 signature with the certificate's public
// key and checks that its payload is {register_index: 0, register_value:
// pcr0}. It returns nil only if both hold.
func (s *Signature) CheckPCR0(pcr0 []byte) error {
	payload, err := s.verify()
	if err != nil {
		return err
	}
	var info pcrInfo
	if err := cbor.Unmarshal(payload, &info); err != nil {
		return fmt.Errorf("eif: signature payload is not a PCR info map: %w", err)
	}
	if info.RegisterIndex != 0 || !bytes.Equal(info.RegisterValue, pcr0) {
		return fmt.Errorf("eif: signature covers PCR%d = %x, but the image's PCR0 is %x", info.RegisterIndex, info.RegisterValue, pcr0)
	}
	return nil
}

// CheckForLaunch makes nitro-cli's check before it starts a signed EIF
// (run-enclave's PcrSignatureChecker in image-format src/utils): the
// COSE_Sign1 signature verifies with the certificate's public key, and
// the certificate is valid at now. Like nitro-cli, it does not compare
// the signed PCR0 with the image's; CheckPCR0 does.
func (s *Signature) CheckForLaunch(now time.Time) error {
	if _, err := s.verify(); err != nil {
		return err
	}
	c := s.Certificate
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("eif: the signing certificate is valid from %s to %s, not at %s",
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// verify checks the COSE_Sign1 signature with the certificate's public key
// and returns its payload.
func (s *Signature) verify() ([]byte, error) {
	var msg cose.UntaggedSign1Message
	if err := msg.UnmarshalCBOR(s.COSESign1); err != nil {
		var tagged cose.Sign1Message
		if err2 := tagged.UnmarshalCBOR(s.COSESign1); err2 != nil {
			return nil, fmt.Errorf("eif: signature is not a COSE_Sign1: %w", err)
		}
		msg = cose.UntaggedSign1Message(tagged)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		return nil, fmt.Errorf("eif: signature algorithm: %w", err)
	}
	v, err := cose.NewVerifier(alg, s.Certificate.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("eif: signature verifier: %w", err)
	}
	if err := msg.Verify(nil, v); err != nil {
		return nil, fmt.Errorf("eif: signature does not verify with the signing certificate's key: %w", err)
	}
	return msg.Payload, nil
}

// coseAlgorithm picks the COSE algorithm for an ECDSA key by its curve, as
// aws-nitro-enclaves-cose does (P-256 ES256, P-384 ES384, P-521 ES512).
func coseAlgorithm(pub crypto.PublicKey) (cose.Algorithm, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return 0, fmt.Errorf("eif: signing key is %T, want an ECDSA key", pub)
	}
	switch k.Curve {
	case elliptic.P256():
		return cose.AlgorithmES256, nil
	case elliptic.P384():
		return cose.AlgorithmES384, nil
	case elliptic.P521():
		return cose.AlgorithmES512, nil
	}
	return 0, fmt.Errorf("eif: unsupported ECDSA curve %s", k.Curve.Params().Name)
}

// signatureSection builds the signature section for pcr0: a CBOR array of one
// PcrSignature holding certPEM and a COSE_Sign1 over the PCR0 payload.
func signatureSection(signer crypto.Signer, cert *x509.Certificate, pcr0 []byte) ([]byte, error) {
	if cert == nil {
		return nil, errors.New("eif: signing key given without a certificate")
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, errors.New("eif: private key does not match the signing certificate")
	}
	alg, err := coseAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	cs, err := cose.NewSigner(alg, signer)
	if err != nil {
		return nil, fmt.Errorf("eif: cose signer: %w", err)
	}
	payload, err := signaturePayload(0, pcr0)
	if err != nil {
		return nil, err
	}
	msg := cose.UntaggedSign1Message{
		Headers: cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: alg}},
		Payload: payload,
	}
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("eif: sign PCR0: %w", err)
	}
	coseBytes, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("eif: encode COSE_Sign1: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	return cbor.Marshal([]pcrSignatureWire{{SigningCertificate: widen(certPEM), Signature: widen(coseBytes)}})
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// Package attestation builds, signs, parses and verifies Nitro Enclaves
// attestation documents: COSE_Sign1 (RFC 8152) structures signed with ES384
// whose payload is the CBOR map AWS documents in
// aws-nitro-enclaves-nsm-api (src/api/mod.rs, AttestationDoc) and
// docs/attestation_process.md.
//
// Documents are encoded exactly as the real NSM encodes them: untagged
// COSE_Sign1, protected header {1: -35}, empty unprotected header, payload
// fields in AttestationDoc's declaration order (serde_cbor keeps it), optional
// fields as CBOR null, and a 96-byte r||s signature.
//
// # Security
//
// Parse and Verify accept untrusted input. Decoding is bounded (nesting,
// array and map sizes, duplicate keys rejected) and never panics; Verify
// checks structure, algorithm, chain, signature and policy, in that order.
package attestation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nitrovm/nitrovm/ca"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// DigestSHA384 is the only digest the NSM reports and the only one accepted.
const DigestSHA384 = "SHA384"

// Size limits, from AWS's attestation_process.md ("Attestation document
// specification"), widened where the device accepts more: AWS's own nsm-check
// sends 1024-byte user_data, nonce and public_key and expects success.
const (
	// MaxPCRs is the number of PCRs a document may carry (1..32).
	MaxPCRs = 32
	// MaxOptionalFieldBytes bounds user_data, nonce and public_key when
	// parsing; a request to the device is at most 4096 bytes in total.
	MaxOptionalFieldBytes = 4096
	// MaxCABundle bounds the number of CA certificates in cabundle.
	MaxCABundle = 16
	// MaxCertificateBytes bounds each DER certificate (AWS: 1..1024).
	MaxCertificateBytes = 4096
	// MaxDocumentBytes bounds a whole document; the device response buffer
	// is 0x3000 bytes.
	MaxDocumentBytes = 0x3000
)

// Document is the payload of an attestation document.
type Document struct {
	ModuleID    string         // issuing NSM's module ID
	Digest      string         // always DigestSHA384
	Timestamp   uint64         // milliseconds since the Unix epoch
	PCRs        map[int][]byte // index -> 48-byte SHA-384 value
	Certificate []byte         // DER leaf certificate that signed the document
	CABundle    [][]byte       // DER CA certificates, root first, leaf's issuer last
	PublicKey   []byte         // optional; nil is encoded as null
	UserData    []byte         // optional; nil is encoded as null
	Nonce       []byte         // optional; nil is encoded as null
}

// Time returns Timestamp as a time.Time.
func (d *Document) Time() time.Time { return time.UnixMilli(int64(d.Timestamp)).UTC() }

// payload is the CBOR shape of Document. Field order is the wire order.
type payload struct {
	ModuleID    string   `cbor:"module_id"`
	Digest      string   `cbor:"digest"`
	Timestamp   uint64   `cbor:"timestamp"`
	PCRs        pcrMap   `cbor:"pcrs"`
	Certificate []byte   `cbor:"certificate"`
	CABundle    [][]byte `cbor:"cabundle"`
	PublicKey   []byte   `cbor:"public_key"`
	UserData    []byte   `cbor:"user_data"`
	Nonce       []byte   `cbor:"nonce"`
}

// pcrMap encodes PCRs with ascending keys, as serde_cbor encodes the
// BTreeMap<usize, ByteBuf> of AttestationDoc.
type pcrMap map[int][]byte

// MarshalCBOR implements cbor.Marshaler.
func (p pcrMap) MarshalCBOR() ([]byte, error) {
	out := appendHead(nil, 5, uint64(len(p)))
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if k < 0 {
			return nil, fmt.Errorf("negative PCR index %d", k)
		}
		out = appendHead(out, 0, uint64(k))
		out = appendHead(out, 2, uint64(len(p[k])))
		out = append(out, p[k]...)
	}
	return out, nil
}

// appendHead appends a CBOR head (RFC 8949 §3) in its shortest form.
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// Payload returns the CBOR payload of d, byte for byte as the NSM encodes it.
func (d *Document) Payload() ([]byte, error) {
	p := payload{
		ModuleID:    d.ModuleID,
		Digest:      d.Digest,
		Timestamp:   d.Timestamp,
		PCRs:        pcrMap(d.PCRs),
		Certificate: d.Certificate,
		CABundle:    d.CABundle,
		PublicKey:   d.PublicKey,
		UserData:    d.UserData,
		Nonce:       d.Nonce,
	}
	if p.CABundle == nil {
		p.CABundle = [][]byte{}
	}
	if p.Certificate == nil {
		p.Certificate = []byte{}
	}
	b, err := cbor.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("attestation: encode payload: %w", err)
	}
	return b, nil
}

// Sign encodes d and signs it with key (ECDSA P-384, the key of
// d.Certificate), returning an untagged COSE_Sign1 document as the NSM emits
// it. Signatures are deterministic (RFC 6979) when key is an
// *ecdsa.PrivateKey; other crypto.Signers get crypto/rand.
func Sign(d *Document, key crypto.Signer) ([]byte, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, errors.New("attestation: signing key is not ECDSA P-384")
	}
	if k, ok := key.(*ecdsa.PrivateKey); ok {
		key = ca.DeterministicSigner(k)
	}
	p, err := d.Payload()
	if err != nil {
		return nil, err
	}
	signer, err := cose.NewSigner(cose.AlgorithmES384, key)
	if err != nil {
		return nil, fmt.Errorf("attestation: %w", err)
	}
	msg := cose.UntaggedSign1Message{
		Headers: cose.Headers{
			Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES384},
		},
		Payload: p,
	}
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		return nil, fmt.Errorf("attestation: sign: %w", err)
	}
	out, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("attestation: encode COSE_Sign1: %w", err)
	}
	return out, nil
}

package attestation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Errors Verify wraps, one per failed check, so that callers (and the CLI)
// can tell what went wrong.
var (
	ErrMalformed = errors.New("attestation: malformed document")
	ErrAlgorithm = errors.New("attestation: unsupported signature algorithm")
	ErrChain     = errors.New("attestation: certificate chain does not verify")
	ErrSignature = errors.New("attestation: COSE signature does not verify with the leaf certificate's key")
	ErrNonce     = errors.New("attestation: nonce mismatch")
	ErrPCR       = errors.New("attestation: PCR mismatch")
)

// cose18 is the CBOR head of tag 18 (COSE_Sign1, RFC 8152 §2).
const cose18 = 0xd2

// payloadDecMode bounds decoding of untrusted payloads.
func payloadDecMode() (cbor.DecMode, error) {
	return cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  8,
		MaxArrayElements: 64,
		MaxMapPairs:      64,
		TagsMd:           cbor.TagsForbidden,
		IndefLength:      cbor.IndefLengthForbidden,
	}.DecMode()
}

// payloadIn is payload with presence tracking for required fields.
type payloadIn struct {
	ModuleID    *string           `cbor:"module_id"`
	Digest      *string           `cbor:"digest"`
	Timestamp   *uint64           `cbor:"timestamp"`
	PCRs        map[uint64][]byte `cbor:"pcrs"`
	Certificate []byte            `cbor:"certificate"`
	CABundle    [][]byte          `cbor:"cabundle"`
	PublicKey   []byte            `cbor:"public_key"`
	UserData    []byte            `cbor:"user_data"`
	Nonce       []byte            `cbor:"nonce"`
}

// Parse decodes an attestation document (untagged or with COSE tag 18) and
// checks its structure as AWS's attestation_process.md specifies, without
// checking the signature or the chain.
func Parse(doc []byte) (*Document, error) {
	d, _, err := parse(doc)
	return d, err
}

func parse(doc []byte) (*Document, *cose.Sign1Message, error) {
	if len(doc) == 0 {
		return nil, nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(doc) > MaxDocumentBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(doc), MaxDocumentBytes)
	}
	var msg cose.Sign1Message
	var err error
	if doc[0] == cose18 {
		err = msg.UnmarshalCBOR(doc)
	} else {
		err = (*cose.UntaggedSign1Message)(&msg).UnmarshalCBOR(doc)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: COSE_Sign1: %v", ErrMalformed, err)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrAlgorithm, err)
	}
	if alg != cose.AlgorithmES384 {
		return nil, nil, fmt.Errorf("%w: %v, want ES384", ErrAlgorithm, alg)
	}
	if len(msg.Signature) != 96 {
		return nil, nil, fmt.Errorf("%w: signature is %d bytes, want 96", ErrMalformed, len(msg.Signature))
	}
	dm, err := payloadDecMode()
	if err != nil {
		return nil, nil, fmt.Errorf("attestation: %w", err)
	}
	var p payloadIn
	if err := dm.Unmarshal(msg.Payload, &p); err != nil {
		return nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	d, err := p.check()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return d, &msg, nil
}

// check validates p against AWS's document specification.
func (p *payloadIn) check() (*Document, error) {
	switch {
	case p.ModuleID == nil || *p.ModuleID == "":
		return nil, errors.New("module_id missing or empty")
	case p.Digest == nil:
		return nil, errors.New("digest missing")
	case *p.Digest != DigestSHA384:
		return nil, fmt.Errorf("digest %q, want %q", *p.Digest, DigestSHA384)
	case p.Timestamp == nil || *p.Timestamp == 0:
		return nil, errors.New("timestamp missing or zero")
	case len(p.PCRs) == 0 || len(p.PCRs) > MaxPCRs:
		return nil, fmt.Errorf("%d pcrs, want 1..%d", len(p.PCRs), MaxPCRs)
	case len(p.Certificate) == 0 || len(p.Certificate) > MaxCertificateBytes:
		return nil, fmt.Errorf("certificate is %d bytes, want 1..%d", len(p.Certificate), MaxCertificateBytes)
	case len(p.CABundle) == 0 || len(p.CABundle) > MaxCABundle:
		return nil, fmt.Errorf("cabundle has %d certificates, want 1..%d", len(p.CABundle), MaxCABundle)
	case len(p.PublicKey) > MaxOptionalFieldBytes:
		return nil, fmt.Errorf("public_key is %d bytes, limit %d", len(p.PublicKey), MaxOptionalFieldBytes)
	case len(p.UserData) > MaxOptionalFieldBytes:
		return nil, fmt.Errorf("user_data is %d bytes, limit %d", len(p.UserData), MaxOptionalFieldBytes)
	case len(p.Nonce) > MaxOptionalFieldBytes:
		return nil, fmt.Errorf("nonce is %d bytes, limit %d", len(p.Nonce), MaxOptionalFieldBytes)
	}
	d := &Document{
		ModuleID:    *p.ModuleID,
		Digest:      *p.Digest,
		Timestamp:   *p.Timestamp,
		PCRs:        make(map[int][]byte, len(p.PCRs)),
		Certificate: p.Certificate,
		CABundle:    p.CABundle,
		PublicKey:   p.PublicKey,
		UserData:    p.UserData,
		Nonce:       p.Nonce,
	}
	for i, v := range p.PCRs {
		if i >= MaxPCRs {
			return nil, fmt.Errorf("pcr index %d, want < %d", i, MaxPCRs)
		}
		if n := len(v); n != 32 && n != 48 && n != 64 {
			return nil, fmt.Errorf("pcr %d is %d bytes, want 32, 48 or 64", i, n)
		}
		d.PCRs[int(i)] = v
	}
	for i, c := range p.CABundle {
		if len(c) == 0 || len(c) > MaxCertificateBytes {
			return nil, fmt.Errorf("cabundle[%d] is %d bytes, want 1..%d", i, len(c), MaxCertificateBytes)
		}
	}
	return d, nil
}

// VerifyOptions is what a document is verified against.
type VerifyOptions struct {
	// Roots are the trusted root certificates. Required.
	Roots *x509.CertPool
	// CurrentTime is when certificate validity is checked; zero means now.
	CurrentTime time.Time
	// PCRs are expected PCR values by index; each must be present and equal.
	PCRs map[int][]byte
	// Nonce, if non-nil, must equal the document's nonce.
	Nonce []byte
	// Chains, if non-nil, remembers verified certificate chains across
	// calls (see ChainCache).
	Chains *ChainCache
}

// Result is a verified document and the chain that vouched for it.
type Result struct {
	Document *Document
	// Chain runs from the leaf to the trusted root.
	Chain []*x509.Certificate
}

// Verify fully verifies an attestation document: structure and field limits,
// the ES384 algorithm, the leaf -> cabundle -> root chain with validity at
// opts.CurrentTime, the COSE signature by the leaf key, then the PCR and
// nonce policy. Each failure wraps one of the Err* values above.
func Verify(doc []byte, opts VerifyOptions) (*Result, error) {
	if opts.Roots == nil {
		return nil, errors.New("attestation: verify: no trusted roots")
	}
	d, msg, err := parse(doc)
	if err != nil {
		return nil, err
	}
	now := opts.CurrentTime
	if now.IsZero() {
		now = time.Now()
	}
	chain, err := verifyChain(d, opts.Roots, now, opts.Chains)
	if err != nil {
		return nil, err
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: leaf key is not ECDSA P-384", ErrSignature)
	}
	verifier, err := cose.NewVerifier(cose.AlgorithmES384, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if err := msg.Verify(nil, verifier); err != nil {
		return nil, ErrSignature
	}
	if opts.Nonce != nil && !bytes.Equal(opts.Nonce, d.Nonce) {
		return nil, fmt.Errorf("%w: got %x, want %x", ErrNonce, d.Nonce, opts.Nonce)
	}
	for i := range MaxPCRs {
		want, ok := opts.PCRs[i]
		if !ok {
			continue
		}
		got, present := d.PCRs[i]
		if !present {
			return nil, fmt.Errorf("%w: PCR%d absent from document", ErrPCR, i)
		}
		if !bytes.Equal(got, want) {
			return nil, fmt.Errorf("%w: PCR%d is %x, want %x", ErrPCR, i, got, want)
		}
	}
	for i := range opts.PCRs {
		if i < 0 || i >= MaxPCRs {
			return nil, fmt.Errorf("%w: PCR%d does not exist", ErrPCR, i)
		}
	}
	return &Result{Document: d, Chain: chain}, nil
}

// verifyChain verifies d's leaf -> cabundle chain to roots at now, or finds
// it in cache, and returns it from the leaf to the root.
func verifyChain(d *Document, roots *x509.CertPool, now time.Time, cache *ChainCache) ([]*x509.Certificate, error) {
	key := chainKey(d)
	if chain := cache.lookup(key, roots, now); chain != nil {
		return chain, nil
	}
	leaf, err := x509.ParseCertificate(d.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%w: leaf certificate: %v", ErrChain, err)
	}
	inter := x509.NewCertPool()
	for i, der := range d.CABundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: cabundle[%d]: %v", ErrChain, i, err)
		}
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChain, err)
	}
	cache.store(key, roots, chains[0])
	return chains[0], nil
}

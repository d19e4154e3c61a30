// Package ca is nitrovm's local certificate authority: it creates, persists,
// exports and rotates a P-384 chain shaped like AWS's Nitro Enclaves PKI and
// issues the per-enclave leaf certificates that sign attestation documents.
//
// The chain is root -> regional intermediate -> instance intermediate -> leaf,
// mirroring AWS's root -> zonal -> regional/instance -> enclave chain: every
// certificate is ECDSA P-384 signed with SHA-384, CA certificates carry
// critical basic constraints with decreasing path lengths and the keyCertSign
// and cRLSign usages, the leaf is CA:FALSE with digitalSignature only. Every
// name says that it belongs to an emulator and not to AWS.
//
// # Security
//
// This CA is for testing verifiers. Anyone with access to the state directory
// can mint documents that verify against its root; never trust its root where
// real attestation is expected.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// Organization is the subject organization of every certificate the CA makes.
const Organization = "nitrovm emulated enclave — not AWS"

// Common names of the CA certificates.
const (
	RootCommonName     = "nitrovm emulated root CA — not AWS"
	RegionalCommonName = "nitrovm emulated regional CA — not AWS"
	InstanceCommonName = "nitrovm emulated instance CA — not AWS"
	// LeafNameSuffix is appended to the module ID to form a leaf's common
	// name, as AWS appends ".<region>.aws" (e.g. "i-…-enc….us-east-1.aws").
	LeafNameSuffix = ".nitrovm.not-aws"
)

// Validity windows. AWS's root is valid for 30 years; its intermediates and
// leaves are short-lived and reissued. nitrovm keeps the same shape: the
// intermediates are renewed on load when RenewBefore* says so, and leaves last
// a few hours like the enclave certificates seen in AWS documents.
const (
	RootValidity     = 30 * 365 * 24 * time.Hour
	RegionalValidity = 365 * 24 * time.Hour
	InstanceValidity = 30 * 24 * time.Hour
	LeafValidity     = 3 * time.Hour
	// RenewRegionalBefore is how long before expiry the regional CA is renewed.
	RenewRegionalBefore = 60 * 24 * time.Hour
	// RenewInstanceBefore is how long before expiry the instance CA is renewed.
	RenewInstanceBefore = 7 * 24 * time.Hour
)

// Path length constraints: root unconstrained like AWS's root, then 1 and 0
// so that only leaves hang below the instance CA.
const (
	regionalMaxPathLen = 1
	instanceMaxPathLen = 0
)

// Options are the CA's sources of randomness and time. The zero value uses
// crypto/rand and time.Now; a seeded Rand and fixed Now make every key,
// serial number and signature reproducible.
type Options struct {
	Rand io.Reader
	Now  func() time.Time
	// NoRenew stops LoadOrCreate from renewing intermediates that expire
	// soon (for read-only uses such as exporting the root, so that a later
	// fixed-clock issuer still finds the intermediates it expects).
	NoRenew bool
}

func (o Options) rand() io.Reader {
	if o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// CA is a loaded or freshly created certificate authority.
type CA struct {
	Root, Regional, Instance *x509.Certificate

	rootKey, regionalKey, instanceKey *ecdsa.PrivateKey
	opts                              Options
}

// Leaf is a per-enclave signing identity: its key signs attestation
// documents, Certificate goes in a document's "certificate" field and
// CABundle (DER, root first, the leaf's issuer last) in "cabundle".
type Leaf struct {
	Key         crypto.Signer
	Certificate *x509.Certificate
	CABundle    [][]byte
}

// New creates a fresh CA in memory.
func New(opts Options) (*CA, error) {
	c := &CA{opts: opts}
	now := opts.now()
	var err error
	if c.rootKey, err = newKey(opts.rand()); err != nil {
		return nil, fmt.Errorf("ca: root key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               name(RootCommonName),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	if c.Root, err = c.sign(tmpl, &c.rootKey.PublicKey, nil, c.rootKey); err != nil {
		return nil, fmt.Errorf("ca: root certificate: %w", err)
	}
	if err := c.renewRegional(now); err != nil {
		return nil, err
	}
	return c, nil
}

// renewRegional replaces the regional and instance intermediates.
func (c *CA) renewRegional(now time.Time) error {
	var err error
	if c.regionalKey, err = newKey(c.opts.rand()); err != nil {
		return fmt.Errorf("ca: regional key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               name(RegionalCommonName),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(RegionalValidity), c.Root.NotAfter),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            regionalMaxPathLen,
	}
	if c.Regional, err = c.sign(tmpl, &c.regionalKey.PublicKey, c.Root, c.rootKey); err != nil {
		return fmt.Errorf("ca: regional certificate: %w", err)
	}
	return c.renewInstance(now)
}

// renewInstance replaces the instance intermediate.
func (c *CA) renewInstance(now time.Time) error {
	var err error
	if c.instanceKey, err = newKey(c.opts.rand()); err != nil {
		return fmt.Errorf("ca: instance key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               name(InstanceCommonName),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(InstanceValidity), c.Regional.NotAfter),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            instanceMaxPathLen,
		MaxPathLenZero:        true,
	}
	if c.Instance, err = c.sign(tmpl, &c.instanceKey.PublicKey, c.Regional, c.regionalKey); err != nil {
		return fmt.Errorf("ca: instance certificate: %w", err)
	}
	return nil
}

// renewIfDue renews intermediates that expire soon. It reports whether
// anything changed.
func (c *CA) renewIfDue(now time.Time) (bool, error) {
	switch {
	case now.Add(RenewRegionalBefore).After(c.Regional.NotAfter):
		return true, c.renewRegional(now)
	case now.Add(RenewInstanceBefore).After(c.Instance.NotAfter):
		return true, c.renewInstance(now)
	}
	return false, nil
}

// WithOptions returns a copy of c that draws randomness and time from opts
// (for issuing leaves), sharing c's certificates and keys.
func (c *CA) WithOptions(opts Options) *CA {
	d := *c
	d.opts = opts
	return &d
}

// IssueLeaf issues a leaf certificate for the enclave moduleID, valid for
// LeafValidity from now, with a fresh P-384 key.
func (c *CA) IssueLeaf(moduleID string) (*Leaf, error) {
	if moduleID == "" {
		return nil, errors.New("ca: issue leaf: empty module ID")
	}
	key, err := newKey(c.opts.rand())
	if err != nil {
		return nil, fmt.Errorf("ca: leaf key: %w", err)
	}
	now := c.opts.now()
	tmpl := &x509.Certificate{
		Subject:               name(moduleID + LeafNameSuffix),
		NotBefore:             now.Truncate(time.Second),
		NotAfter:              minTime(now.Add(LeafValidity), c.Instance.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	cert, err := c.sign(tmpl, &key.PublicKey, c.Instance, c.instanceKey)
	if err != nil {
		return nil, fmt.Errorf("ca: leaf certificate for %s: %w", moduleID, err)
	}
	return &Leaf{Key: rfc6979Signer{key}, Certificate: cert, CABundle: c.Bundle()}, nil
}

// ServerValidity is how long a TLS server certificate from IssueServer is
// valid (capped by the instance intermediate's expiry).
const ServerValidity = 7 * 24 * time.Hour

// IssueServer issues a TLS server certificate for dnsNames (and ipAddrs)
// under the instance intermediate, with a fresh P-384 key, for local
// services such as the KMS at kms.<region>.amazonaws.com. The returned
// chain runs leaf, instance, regional; clients trust the root.
func (c *CA) IssueServer(dnsNames []string, ipAddrs []net.IP) (tls.Certificate, error) {
	if len(dnsNames) == 0 {
		return tls.Certificate{}, errors.New("ca: issue server certificate: no DNS name")
	}
	key, err := newKey(c.opts.rand())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: server key: %w", err)
	}
	now := c.opts.now()
	tmpl := &x509.Certificate{
		Subject:               name(dnsNames[0]),
		DNSNames:              dnsNames,
		IPAddresses:           ipAddrs,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(ServerValidity), c.Instance.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	cert, err := c.sign(tmpl, &key.PublicKey, c.Instance, c.instanceKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ca: server certificate for %s: %w", dnsNames[0], err)
	}
	return tls.Certificate{
		Certificate: [][]byte{cert.Raw, c.Instance.Raw, c.Regional.Raw},
		PrivateKey:  key,
		Leaf:        cert,
	}, nil
}

// Bundle returns the CA certificates in DER, root first and the leaves'
// issuer last: the "cabundle" of an attestation document.
func (c *CA) Bundle() [][]byte {
	return [][]byte{c.Root.Raw, c.Regional.Raw, c.Instance.Raw}
}

// RootPEM returns the root certificate in PEM form.
func (c *CA) RootPEM() []byte { return certPEM(c.Root) }

// sign creates a certificate from tmpl for pub, signed by parent's key (or
// self-signed when parent is nil).
func (c *CA) sign(tmpl *x509.Certificate, pub *ecdsa.PublicKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := newSerial(c.opts.rand())
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, rfc6979Signer{parentKey})
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func name(cn string) pkix.Name {
	return pkix.Name{
		Organization:       []string{Organization},
		OrganizationalUnit: []string{"nitrovm"},
		CommonName:         cn,
	}
}

func minTime(a, b time.Time) time.Time {
	if a.After(b) {
		return b
	}
	return a
}

// keySeedBytes is how many random bytes a key is derived from: 64 bytes
// reduced modulo the 384-bit group order leaves a bias below 2^-128 (FIPS
// 186-5 A.2.1, "extra random bits").
const keySeedBytes = 64

// newKey derives a P-384 key from r. Unlike ecdsa.GenerateKey (which since
// Go 1.26 ignores its reader), it is reproducible when r is seeded.
func newKey(r io.Reader) (*ecdsa.PrivateKey, error) {
	var seed [keySeedBytes]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, fmt.Errorf("read key seed: %w", err)
	}
	n := elliptic.P384().Params().N
	d := new(big.Int).SetBytes(seed[:])
	d.Mod(d, new(big.Int).Sub(n, big.NewInt(1)))
	d.Add(d, big.NewInt(1))
	raw := make([]byte, (n.BitLen()+7)/8)
	d.FillBytes(raw)
	return ecdsa.ParseRawPrivateKey(elliptic.P384(), raw)
}

// newSerial returns a positive 127-bit serial number from r.
func newSerial(r io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("read serial number: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // keep a fixed length of 16 bytes
	return new(big.Int).SetBytes(b[:]), nil
}

// DeterministicSigner returns a crypto.Signer for k that signs with
// deterministic ECDSA (RFC 6979), which Go's ecdsa.PrivateKey.Sign performs
// when given a nil reader. Signatures are then reproducible and need no
// entropy.
func DeterministicSigner(k *ecdsa.PrivateKey) crypto.Signer { return rfc6979Signer{k} }

// rfc6979Signer is DeterministicSigner's implementation.
type rfc6979Signer struct{ k *ecdsa.PrivateKey }

func (s rfc6979Signer) Public() crypto.PublicKey { return &s.k.PublicKey }

func (s rfc6979Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil { // go-cose passes none; RFC 6979 needs the hash
		opts = hashFor(len(digest))
	}
	return s.k.Sign(nil, digest, opts)
}

// hashFor returns the SHA-2 hash whose digest is n bytes long.
func hashFor(n int) crypto.Hash {
	switch n {
	case 32:
		return crypto.SHA256
	case 64:
		return crypto.SHA512
	}
	return crypto.SHA384
}

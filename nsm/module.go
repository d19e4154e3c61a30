// Package nsm is an emulated AWS Nitro Secure Module: the request/response
// protocol (CBOR, as serde_cbor encodes aws-nitro-enclaves-nsm-api's Request
// and Response enums), the bank of 32 SHA-384 PCRs, and attestation
// documents really signed by a local CA (package ca) instead of QEMU's
// unsigned placeholders. It knows nothing of virtio: the device model passes
// each request's bytes to Module.Process and copies the answer back.
//
// # Security
//
// Requests come from the guest and are untrusted. Process bounds their size,
// decodes them without panicking and answers every malformed input with an
// error response; it never fails the host.
package nsm

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/nitrovm/nitrovm/attestation"
	"github.com/nitrovm/nitrovm/ca"
)

// Signer is the module's attestation backend: the key that signs documents
// and the certificates that go with it.
type Signer interface {
	// SigningIdentity returns the signing key, the DER leaf certificate and
	// the DER CA bundle (root first, the leaf's issuer last) to use at now.
	SigningIdentity(now time.Time) (key crypto.Signer, cert []byte, cabundle [][]byte, err error)
}

// Config configures a Module.
type Config struct {
	// ModuleID is reported by DescribeNSM and in documents. Required.
	ModuleID string
	// PCRs are initial PCR values (PCRSize bytes each), set before locking.
	PCRs map[int][]byte
	// LockedPCRs locks PCRs [0, LockedPCRs) at start; enclaves use
	// BootLockedPCRs.
	LockedPCRs int
	// Debug zeroes every PCR value in attestation documents, as Nitro does
	// for enclaves started with --debug-mode. DescribePCR is unaffected.
	Debug bool
	// Signer signs documents. Nil means a fresh in-memory CA (from Rand and
	// Now) issues a leaf for ModuleID.
	Signer Signer
	// Rand feeds GetRandom; nil means crypto/rand. A seeded reader (see
	// ca.SeededRand) with a fixed Now makes every response reproducible.
	Rand io.Reader
	// Now is the clock for document timestamps; nil means time.Now.
	Now func() time.Time
}

// Module is one emulated NSM. It is safe for concurrent use.
type Module struct {
	moduleID string
	debug    bool
	signer   Signer
	rand     io.Reader
	now      func() time.Time
	pcrs     Bank
	dm       cbor.DecMode // request decoding mode, built once
}

// New returns a Module configured by cfg.
func New(cfg Config) (*Module, error) {
	if cfg.ModuleID == "" {
		return nil, errors.New("nsm: empty module ID")
	}
	if cfg.LockedPCRs < 0 || cfg.LockedPCRs > NumPCRs {
		return nil, fmt.Errorf("nsm: LockedPCRs %d out of range 0..%d", cfg.LockedPCRs, NumPCRs)
	}
	m := &Module{
		moduleID: cfg.ModuleID,
		debug:    cfg.Debug,
		signer:   cfg.Signer,
		rand:     cfg.Rand,
		now:      cfg.Now,
	}
	var err error
	if m.dm, err = decMode(); err != nil {
		return nil, fmt.Errorf("nsm: %w", err)
	}
	if m.rand == nil {
		m.rand = rand.Reader
	} else {
		m.rand = ca.LockedReader(m.rand)
	}
	if m.now == nil {
		m.now = time.Now
	}
	for i, v := range cfg.PCRs {
		if err := m.pcrs.Set(i, v); err != nil {
			return nil, fmt.Errorf("nsm: initial PCR%d: %w", i, err)
		}
	}
	if err := m.pcrs.LockRange(cfg.LockedPCRs); err != nil {
		return nil, fmt.Errorf("nsm: lock PCRs: %w", err)
	}
	if m.signer == nil {
		c, err := ca.New(ca.Options{Rand: m.rand, Now: m.now})
		if err != nil {
			return nil, fmt.Errorf("nsm: in-memory CA: %w", err)
		}
		m.signer = NewCASigner(c, cfg.ModuleID)
	}
	return m, nil
}

// ModuleID returns the module ID.
func (m *Module) ModuleID() string { return m.moduleID }

// PCRs returns the module's PCR bank.
func (m *Module) PCRs() *Bank { return &m.pcrs }

// Process handles one raw CBOR request and returns the raw CBOR response
// (<= MaxResponseSize). Never panics; safe for concurrent use.
func (m *Module) Process(request []byte) []byte {
	out := m.handle(request)
	if len(out) > MaxResponseSize {
		return encodeError(BufferTooSmall)
	}
	return out
}

// ProcessInto handles one request and writes the response into resp, the
// device's view of the driver's in-buffer, returning its length. A response
// that does not fit is replaced by {"Error":"BufferTooSmall"}; if even that
// does not fit (len(resp) < 22), ProcessInto returns 0.
func (m *Module) ProcessInto(request, resp []byte) int {
	out := m.handle(request)
	if len(out) > len(resp) {
		out = encodeError(BufferTooSmall)
		if len(out) > len(resp) {
			return 0
		}
	}
	return copy(resp, out)
}

// handle returns the encoded response to request.
func (m *Module) handle(request []byte) (out []byte) {
	defer func() {
		if recover() != nil {
			out = encodeError(InternalError)
		}
	}()
	req, err := decodeRequest(m.dm, request)
	if err != nil {
		return encodeError(asCode(err))
	}
	out, err = m.Do(req)
	if err != nil {
		return encodeError(asCode(err))
	}
	return out
}

// Do executes a decoded request and returns the encoded response. Errors are
// ErrorCode values (anything else is reported as InternalError).
func (m *Module) Do(req *Request) ([]byte, error) {
	switch req.Name {
	case reqDescribePCR:
		v, locked, err := m.pcrs.Describe(int(req.Index))
		if err != nil {
			return nil, err
		}
		return encodeResponse(reqDescribePCR, describePCRResp{Lock: locked, Data: v})
	case reqExtendPCR:
		v, err := m.pcrs.Extend(int(req.Index), req.Data)
		if err != nil {
			return nil, err
		}
		return encodeResponse(reqExtendPCR, extendPCRResp{Data: v})
	case reqLockPCR:
		if err := m.pcrs.Lock(int(req.Index)); err != nil {
			return nil, err
		}
		return encodeResponse(reqLockPCR, nil)
	case reqLockPCRs:
		if err := m.pcrs.LockRange(int(req.Index)); err != nil {
			return nil, err
		}
		return encodeResponse(reqLockPCRs, nil)
	case reqDescribeNSM:
		locked := m.pcrs.Locked()
		if locked == nil {
			locked = []uint16{}
		}
		return encodeResponse(reqDescribeNSM, describeNSMResp{
			VersionMajor: VersionMajor,
			VersionMinor: VersionMinor,
			VersionPatch: VersionPatch,
			ModuleID:     m.moduleID,
			MaxPCRs:      NumPCRs,
			LockedPCRs:   locked,
			Digest:       Digest,
		})
	case reqGetRandom:
		r := make([]byte, RandomBytes)
		if _, err := io.ReadFull(m.rand, r); err != nil {
			return nil, fmt.Errorf("%w: %v", InternalError, err)
		}
		return encodeResponse(reqGetRandom, getRandomResp{Random: r})
	case reqAttestation:
		doc, err := m.Attest(req.UserData, req.Nonce, req.PublicKey)
		if err != nil {
			return nil, err
		}
		return encodeResponse(reqAttestation, attestationResp{Document: doc})
	}
	return nil, InvalidOperation
}

// Attest returns a signed attestation document carrying the current PCRs
// and the given optional fields (nil = null).
//
// The document carries PCRs 0..15, as real documents do, plus every locked
// PCR above 15 (locking is how an enclave freezes a PCR it wants attested).
// In debug mode every carried PCR value is 48 zero bytes, as AWS documents
// for enclaves run with --debug-mode.
func (m *Module) Attest(userData, nonce, publicKey []byte) ([]byte, error) {
	now := m.now()
	key, cert, bundle, err := m.signer.SigningIdentity(now)
	if err != nil {
		return nil, fmt.Errorf("%w: signing identity: %v", InternalError, err)
	}
	values, locked := m.pcrs.Snapshot()
	pcrs := make(map[int][]byte, NumPCRs)
	for i := range NumPCRs {
		if i >= BootLockedPCRs && !locked[i] {
			continue
		}
		v := make([]byte, PCRSize)
		if !m.debug {
			copy(v, values[i][:])
		}
		pcrs[i] = v
	}
	ms := now.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	d := &attestation.Document{
		ModuleID:    m.moduleID,
		Digest:      attestation.DigestSHA384,
		Timestamp:   uint64(ms),
		PCRs:        pcrs,
		Certificate: cert,
		CABundle:    bundle,
		PublicKey:   publicKey,
		UserData:    userData,
		Nonce:       nonce,
	}
	doc, err := attestation.Sign(d, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", InternalError, err)
	}
	return doc, nil
}

// CASigner is a Signer backed by a CA: it issues a leaf for one module and
// reissues it when less than a third of its validity remains.
type CASigner struct {
	ca       *ca.CA
	moduleID string

	mu   sync.Mutex
	leaf *ca.Leaf
}

// NewCASigner returns a Signer issuing leaves for moduleID from c.
func NewCASigner(c *ca.CA, moduleID string) *CASigner {
	return &CASigner{ca: c, moduleID: moduleID}
}

// SigningIdentity implements Signer.SigningIdentity.
func (s *CASigner) SigningIdentity(now time.Time) (crypto.Signer, []byte, [][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leaf == nil || now.After(s.leaf.Certificate.NotAfter.Add(-ca.LeafValidity/3)) {
		l, err := s.ca.IssueLeaf(s.moduleID)
		if err != nil {
			return nil, nil, nil, err
		}
		s.leaf = l
	}
	return s.leaf.Key, s.leaf.Certificate.Raw, s.leaf.CABundle, nil
}

// EnclaveConfig is what the VMM knows about an enclave when it starts.
type EnclaveConfig struct {
	ModuleID                        string // e.g. "i-0000000000000000-enc1a2b3c4d5e6f7a8"
	PCR0, PCR1, PCR2, PCR8          []byte // from the EIF (eif.Measurements); PCR8 nil if unsigned
	ParentRoleARN, ParentInstanceID string // "" = leave PCR3/PCR4 zero
	Debug                           bool
	StateDir                        string // CA state directory ("" = ca.DefaultDir(os.Getenv))
	Rand                            io.Reader
	Now                             func() time.Time // nil = crypto/rand, time.Now
}

// NewEnclaveModule returns the NSM of an enclave at start: PCR0/1/2/8 set
// from the EIF, PCR3 = Measure(ParentRoleARN), PCR4 =
// Measure(ParentInstanceID), PCRs 0..15 locked, 16..31 free, documents
// signed by a leaf issued for ModuleID from the persistent CA in StateDir.
func NewEnclaveModule(cfg EnclaveConfig) (*Module, error) {
	pcrs := map[int][]byte{0: cfg.PCR0, 1: cfg.PCR1, 2: cfg.PCR2}
	for i, v := range pcrs {
		if len(v) != PCRSize {
			return nil, fmt.Errorf("nsm: PCR%d is %d bytes, want %d", i, len(v), PCRSize)
		}
	}
	if cfg.PCR8 != nil {
		if len(cfg.PCR8) != PCRSize {
			return nil, fmt.Errorf("nsm: PCR8 is %d bytes, want %d", len(cfg.PCR8), PCRSize)
		}
		pcrs[8] = cfg.PCR8
	}
	if cfg.ParentRoleARN != "" {
		pcrs[3] = Measure([]byte(cfg.ParentRoleARN))
	}
	if cfg.ParentInstanceID != "" {
		pcrs[4] = Measure([]byte(cfg.ParentInstanceID))
	}
	dir := cfg.StateDir
	if dir == "" {
		var err error
		if dir, err = ca.DefaultDir(os.Getenv); err != nil {
			return nil, fmt.Errorf("nsm: %w", err)
		}
	}
	// With a caller's (possibly seeded) source, the CA and the module each
	// get a stream derived up front, so the module's leaf key and random
	// bytes do not depend on whether the CA already existed.
	var caRand, rnd io.Reader
	if cfg.Rand != nil {
		var err error
		if caRand, err = ca.DeriveRand(cfg.Rand); err != nil {
			return nil, fmt.Errorf("nsm: %w", err)
		}
		if rnd, err = ca.DeriveRand(cfg.Rand); err != nil {
			return nil, fmt.Errorf("nsm: %w", err)
		}
	}
	c, err := ca.LoadOrCreate(dir, ca.Options{Rand: caRand, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("nsm: %w", err)
	}
	return New(Config{
		ModuleID:   cfg.ModuleID,
		PCRs:       pcrs,
		LockedPCRs: BootLockedPCRs,
		Debug:      cfg.Debug,
		Signer:     NewCASigner(c.WithOptions(ca.Options{Rand: rnd, Now: cfg.Now}), cfg.ModuleID),
		Rand:       rnd,
		Now:        cfg.Now,
	})
}

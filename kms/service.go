// Package kms is a local AWS KMS: a key store persisted on disk, the KMS
// operations an enclave application uses, key policy evaluation, and the
// Recipient flow in which an attestation document from a Nitro enclave
// (verified through package attestation against nitrovm's CA root, or any
// other configured root) receives the answer as a CMS EnvelopedData
// encrypted to the document's RSA public key, laid out byte for byte as
// AWS KMS lays out CiphertextForRecipient.
//
// Service implements the operations; Handler serves them over AWS's JSON
// protocol (application/x-amz-json-1.1, X-Amz-Target: TrentService.<Op>),
// so that AWS SDKs pointed at it work unchanged.
//
// # Security
//
// Requests are untrusted. Bodies, attestation documents, policies and
// ciphertext blobs are bounded and parsed with errors, never panics. The
// state directory holds every key in the clear (mode 0600): this KMS is
// for development and testing, not for protecting real secrets.
package kms

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nitrovm/nitrovm/attestation"
)

// DefaultAccount is the AWS account ID in the ARNs of a Service whose
// Options name none.
const DefaultAccount = "111122223333"

// DefaultRegion is the region of a Service whose Options name none.
const DefaultRegion = "us-east-1"

// Options configure a Service.
type Options struct {
	// Dir is the state directory ("" keeps keys in memory only).
	Dir string
	// Region and Account appear in ARNs.
	Region, Account string
	// Roots are the roots attestation documents must chain to; nil refuses
	// every Recipient.
	Roots *x509.CertPool
	// Rand and Now default to crypto/rand and time.Now.
	Rand io.Reader
	Now  func() time.Time
}

// Service is a local KMS. It is safe for concurrent use.
type Service struct {
	region, account string
	store           *store
	roots           *x509.CertPool
	// chains remembers the verified chains of Recipient documents: an
	// enclave's documents share one, so each costs one ES384 check.
	chains attestation.ChainCache
	rand   io.Reader
	clock  func() time.Time
}

// New opens (or creates) the key store in opts.Dir and returns a Service.
func New(opts Options) (*Service, error) {
	st, err := openStore(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Service{region: opts.Region, account: opts.Account, store: st, roots: opts.Roots, rand: opts.Rand, clock: opts.Now}
	if s.region == "" {
		s.region = DefaultRegion
	}
	if s.account == "" {
		s.account = DefaultAccount
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	return s, nil
}

// Region returns the service's region.
func (s *Service) Region() string { return s.region }

// refused returns why nitrovm refuses op, a real KMS operation it does not
// implement, or "" for any other operation.
func refused(op string) string {
	switch op {
	case "CreateGrant", "ListGrants", "RetireGrant", "RevokeGrant", "ListRetirableGrants":
		return "grants are not implemented by nitrovm's local KMS; express access in the key policy"
	case "ReplicateKey", "UpdatePrimaryRegion":
		return "multi-region keys are not implemented by nitrovm's local KMS"
	case "CreateCustomKeyStore", "ConnectCustomKeyStore", "DeleteCustomKeyStore",
		"DescribeCustomKeyStores", "DisconnectCustomKeyStore", "UpdateCustomKeyStore":
		return "custom key stores (CloudHSM, external) are not implemented by nitrovm's local KMS"
	case "GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial":
		return "imported key material is not implemented by nitrovm's local KMS"
	case "EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand", "ListKeyRotations":
		return "key rotation is not implemented by nitrovm's local KMS"
	case "TagResource", "UntagResource", "ListResourceTags":
		return "tags are not implemented by nitrovm's local KMS"
	}
	return ""
}

// Do runs operation op with a JSON request body and returns the response
// to encode as JSON, or an *Error.
func (s *Service) Do(op string, body []byte) (any, error) {
	if why := refused(op); why != "" {
		return nil, errorf(ErrUnsupportedOperation, "%s: %s", op, why)
	}
	h, ok := s.handlers()[op]
	if !ok {
		return nil, errorf(ErrUnsupportedOperation, "operation %q is not supported by nitrovm's local KMS", op)
	}
	return h(body)
}

// handler decodes a request body and runs an operation.
type handler func(body []byte) (any, error)

// handle adapts a typed operation to a handler.
func handle[Req any, Resp any](f func(*Req) (*Resp, error)) handler {
	return func(body []byte) (any, error) {
		var req Req
		if len(body) == 0 {
			body = []byte("{}")
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, errorf(ErrSerialization, "request body is not valid JSON for this operation: %v", err)
		}
		return f(&req)
	}
}

func (s *Service) handlers() map[string]handler {
	return map[string]handler{
		"CreateKey":                           handle(s.CreateKey),
		"DescribeKey":                         handle(s.DescribeKey),
		"ListKeys":                            handle(s.ListKeys),
		"CreateAlias":                         handle(s.CreateAlias),
		"DeleteAlias":                         handle(s.DeleteAlias),
		"ListAliases":                         handle(s.ListAliases),
		"PutKeyPolicy":                        handle(s.PutKeyPolicy),
		"GetKeyPolicy":                        handle(s.GetKeyPolicy),
		"EnableKey":                           handle(s.EnableKey),
		"DisableKey":                          handle(s.DisableKey),
		"ScheduleKeyDeletion":                 handle(s.ScheduleKeyDeletion),
		"CancelKeyDeletion":                   handle(s.CancelKeyDeletion),
		"Encrypt":                             handle(s.Encrypt),
		"Decrypt":                             handle(s.Decrypt),
		"ReEncrypt":                           handle(s.ReEncrypt),
		"GenerateDataKey":                     handle(s.GenerateDataKey),
		"GenerateDataKeyWithoutPlaintext":     handle(s.GenerateDataKeyWithoutPlaintext),
		"GenerateDataKeyPair":                 handle(s.GenerateDataKeyPair),
		"GenerateDataKeyPairWithoutPlaintext": handle(s.GenerateDataKeyPairWithoutPlaintext),
		"GenerateRandom":                      handle(s.GenerateRandom),
		"Sign":                                handle(s.Sign),
		"Verify":                              handle(s.Verify),
		"GenerateMac":                         handle(s.GenerateMac),
		"VerifyMac":                           handle(s.VerifyMac),
		"GetPublicKey":                        handle(s.GetPublicKey),
		"DeriveSharedSecret":                  handle(s.DeriveSharedSecret),
	}
}

// access is what one authorization check needs.
type access struct {
	action    string // without the "kms:" prefix
	ctx       map[string]string
	recipient *recipient
}

// authorize evaluates k's policy for a request, then k's state.
func (s *Service) authorize(k *key, a access) error {
	vals := map[string]string{}
	for ck, v := range a.ctx {
		vals[strings.ToLower(CondEncContextPfx+ck)] = v
	}
	a.recipient.conditionValues(vals)
	ok, why := k.policy.Allows(RequestContext{Action: "kms:" + a.action, Resource: k.Arn, Values: vals})
	if !ok {
		return errorf(ErrAccessDenied, "User: %s is not authorized to perform: kms:%s on resource: %s because %s", s.caller(), a.action, k.Arn, why)
	}
	return s.usable(k)
}

// caller names the (only) principal.
func (s *Service) caller() string { return "arn:aws:iam::" + s.account + ":root" }

// usable reports a key that cannot be used in its current state.
func (s *Service) usable(k *key) error {
	switch k.State {
	case StateDisabled:
		return errorf(ErrDisabled, "%s is disabled.", k.Arn)
	case StatePendingDeletion:
		return errorf(ErrInvalidState, "%s is pending deletion.", k.Arn)
	}
	return nil
}

// lookup resolves id under the read lock, hiding keys past deletion.
func (s *Service) lookup(id string) (*key, error) {
	s.store.refresh()
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	return s.lookupLocked(id)
}

func (s *Service) lookupLocked(id string) (*key, error) {
	k, err := s.store.resolve(id)
	if err != nil {
		return nil, err
	}
	if k.State == StatePendingDeletion && !s.now().Before(k.DeletionDate) {
		return nil, errorf(ErrNotFound, "Key '%s' does not exist", id)
	}
	return k, nil
}

// newKeyID returns a random version 4 UUID (RFC 9562 §5.4).
func (s *Service) newKeyID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:]), nil
}

func (s *Service) arn(kind, name string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":" + kind + "/" + name
}

// aliasArn returns the ARN of alias name ("alias/...").
func (s *Service) aliasArn(name string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":" + name
}

// useKey resolves id and authorizes a; the returned key's material is
// immutable and may be used after the lock is released.
// Changes another process made to the state directory (keys, aliases,
// policies, states) are picked up first.
func (s *Service) useKey(id string, a access) (*key, error) {
	s.store.refresh()
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	k, err := s.lookupLocked(id)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(k, a); err != nil {
		return nil, err
	}
	return k, nil
}

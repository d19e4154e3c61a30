package kms

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"time"
)

// Key specs (KeySpec in the API).
const (
	SpecSymmetricDefault = "SYMMETRIC_DEFAULT"
	SpecRSA2048          = "RSA_2048"
	SpecRSA3072          = "RSA_3072"
	SpecRSA4096          = "RSA_4096"
	SpecECCP256          = "ECC_NIST_P256"
	SpecECCP384          = "ECC_NIST_P384"
	SpecECCP521          = "ECC_NIST_P521"
	SpecHMAC256          = "HMAC_256"
)

// Key usages (KeyUsage in the API).
const (
	UsageEncryptDecrypt = "ENCRYPT_DECRYPT"
	UsageSignVerify     = "SIGN_VERIFY"
	UsageKeyAgreement   = "KEY_AGREEMENT"
	UsageMac            = "GENERATE_VERIFY_MAC"
)

// Key states (KeyState in the API).
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
)

// Algorithms.
const (
	AlgSymmetric  = "SYMMETRIC_DEFAULT"
	AlgOAEPSHA1   = "RSAES_OAEP_SHA_1"
	AlgOAEPSHA256 = "RSAES_OAEP_SHA_256"
	AlgHMACSHA256 = "HMAC_SHA_256"
	AlgECDH       = "ECDH"
)

// symmetricKeyBytes is the size of SYMMETRIC_DEFAULT and HMAC_256 key
// material (AES-256, and HMAC_256's 256-bit key).
const symmetricKeyBytes = 32

// key is one KMS key: its persisted record and parsed material.
type key struct {
	keyRecord
	sym    []byte            // SYMMETRIC_DEFAULT and HMAC_256
	signer crypto.Signer     // RSA and ECC keys
	policy *Policy           // parsed Policy
	pubDER []byte            // SubjectPublicKeyInfo of asymmetric keys
	ecdh   *ecdh.PrivateKey  // ECC keys with KEY_AGREEMENT usage
	rsa    *rsa.PrivateKey   // RSA keys
	ecdsa  *ecdsa.PrivateKey // ECC keys
}

// keyRecord is what is persisted of a key.
type keyRecord struct {
	KeyID        string
	Arn          string
	Description  string `json:",omitempty"`
	KeySpec      string
	KeyUsage     string
	State        string
	Created      time.Time
	DeletionDate time.Time `json:",omitzero"`
	Policy       string
	// Material is the raw secret for symmetric and HMAC keys, PKCS#8 DER
	// for asymmetric keys.
	Material []byte
}

// validUsage reports whether usage fits spec, and the default usage of
// spec when usage is empty.
func validUsage(spec, usage string) (string, bool) {
	allowed := map[string][]string{
		SpecSymmetricDefault: {UsageEncryptDecrypt},
		SpecRSA2048:          {UsageEncryptDecrypt, UsageSignVerify},
		SpecRSA3072:          {UsageEncryptDecrypt, UsageSignVerify},
		SpecRSA4096:          {UsageEncryptDecrypt, UsageSignVerify},
		SpecECCP256:          {UsageSignVerify, UsageKeyAgreement},
		SpecECCP384:          {UsageSignVerify, UsageKeyAgreement},
		SpecECCP521:          {UsageSignVerify, UsageKeyAgreement},
		SpecHMAC256:          {UsageMac},
	}[spec]
	if len(allowed) == 0 {
		return "", false
	}
	if usage == "" {
		return allowed[0], true
	}
	for _, u := range allowed {
		if u == usage {
			return u, true
		}
	}
	return "", false
}

// newMaterial generates key material for spec.
func newMaterial(rnd io.Reader, spec string) ([]byte, error) {
	switch spec {
	case SpecSymmetricDefault, SpecHMAC256:
		b := make([]byte, symmetricKeyBytes)
		if _, err := io.ReadFull(rnd, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	priv, err := newPrivateKey(rnd, spec)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKCS8PrivateKey(priv)
}

// newPrivateKey generates an asymmetric key pair for an RSA_* or ECC_NIST_*
// spec (KeySpec or KeyPairSpec).
func newPrivateKey(rnd io.Reader, spec string) (crypto.Signer, error) {
	switch spec {
	case SpecRSA2048:
		return rsa.GenerateKey(rnd, 2048)
	case SpecRSA3072:
		return rsa.GenerateKey(rnd, 3072)
	case SpecRSA4096:
		return rsa.GenerateKey(rnd, 4096)
	case SpecECCP256:
		return ecdsa.GenerateKey(elliptic.P256(), rnd)
	case SpecECCP384:
		return ecdsa.GenerateKey(elliptic.P384(), rnd)
	case SpecECCP521:
		return ecdsa.GenerateKey(elliptic.P521(), rnd)
	}
	return nil, fmt.Errorf("unsupported key spec %q", spec)
}

// load parses the record's material and policy.
func (k *key) load() error {
	p, err := ParsePolicy(k.Policy)
	if err != nil {
		return err
	}
	k.policy = p
	switch k.KeySpec {
	case SpecSymmetricDefault, SpecHMAC256:
		if len(k.Material) != symmetricKeyBytes {
			return fmt.Errorf("key %s: material is %d bytes, want %d", k.KeyID, len(k.Material), symmetricKeyBytes)
		}
		k.sym = k.Material
		return nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.Material)
	if err != nil {
		return fmt.Errorf("key %s: %w", k.KeyID, err)
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		k.rsa, k.signer = p, p
	case *ecdsa.PrivateKey:
		k.ecdsa, k.signer = p, p
		if k.ecdh, err = p.ECDH(); err != nil {
			return fmt.Errorf("key %s: %w", k.KeyID, err)
		}
	default:
		return fmt.Errorf("key %s: unexpected private key type %T", k.KeyID, priv)
	}
	if k.pubDER, err = x509.MarshalPKIXPublicKey(k.signer.Public()); err != nil {
		return fmt.Errorf("key %s: %w", k.KeyID, err)
	}
	return nil
}

// metadata returns the key's KeyMetadata.
func (k *key) metadata(account string) *KeyMetadata {
	m := &KeyMetadata{
		AWSAccountId:          account,
		KeyId:                 k.KeyID,
		Arn:                   k.Arn,
		CreationDate:          epoch(k.Created),
		Description:           k.Description,
		Enabled:               k.State == StateEnabled,
		KeyState:              k.State,
		KeyUsage:              k.KeyUsage,
		KeySpec:               k.KeySpec,
		CustomerMasterKeySpec: k.KeySpec,
		KeyManager:            "CUSTOMER",
		Origin:                "AWS_KMS",
		MultiRegion:           false,
	}
	if !k.DeletionDate.IsZero() {
		m.DeletionDate = epoch(k.DeletionDate)
	}
	switch k.KeyUsage {
	case UsageEncryptDecrypt:
		if k.KeySpec == SpecSymmetricDefault {
			m.EncryptionAlgorithms = []string{AlgSymmetric}
		} else {
			m.EncryptionAlgorithms = []string{AlgOAEPSHA1, AlgOAEPSHA256}
		}
	case UsageSignVerify:
		m.SigningAlgorithms = signingAlgorithms(k.KeySpec)
	case UsageKeyAgreement:
		m.KeyAgreementAlgorithms = []string{AlgECDH}
	case UsageMac:
		m.MacAlgorithms = []string{AlgHMACSHA256}
	}
	return m
}

// signingAlgorithms lists the signing algorithms KMS offers for spec.
func signingAlgorithms(spec string) []string {
	switch spec {
	case SpecECCP256:
		return []string{"ECDSA_SHA_256"}
	case SpecECCP384:
		return []string{"ECDSA_SHA_384"}
	case SpecECCP521:
		return []string{"ECDSA_SHA_512"}
	}
	return []string{
		"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
		"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
	}
}

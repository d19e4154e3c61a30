package kms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"hash"
	"io"
	"strings"
)

// Cryptographic operations.

// Size limits from AWS's API reference.
const (
	// MaxPlaintextBytes bounds Encrypt's Plaintext (1..4096).
	MaxPlaintextBytes = 4096
	// MaxRandomBytes bounds GenerateRandom's and GenerateDataKey's
	// NumberOfBytes (1..1024).
	MaxRandomBytes = 1024
	// MaxMessageBytes bounds Sign's, Verify's and GenerateMac's Message
	// (1..4096).
	MaxMessageBytes = 4096
)

// keyUsage checks that k has usage u for op.
func keyUsage(k *key, u, op string) error {
	if k.KeyUsage != u {
		return errorf(ErrInvalidKeyUsage, "%s key usage is %s which is not valid for %s.", k.Arn, k.KeyUsage, op)
	}
	return nil
}

// encryptWith encrypts plaintext under k with alg.
func (s *Service) encryptWith(k *key, alg string, plaintext []byte, ctx map[string]string) ([]byte, string, error) {
	if err := keyUsage(k, UsageEncryptDecrypt, "Encrypt"); err != nil {
		return nil, "", err
	}
	if k.KeySpec == SpecSymmetricDefault {
		if alg != "" && alg != AlgSymmetric {
			return nil, "", errorf(ErrInvalidKeyUsage, "EncryptionAlgorithm %s is not valid for %s", alg, k.Arn)
		}
		blob, err := sealBlob(s.rand, k.KeyID, k.sym, plaintext, ctx)
		if err != nil {
			return nil, "", errorf(ErrInternal, "%v", err)
		}
		return blob, AlgSymmetric, nil
	}
	h, err := oaepHash(k, alg)
	if err != nil {
		return nil, "", err
	}
	if len(ctx) > 0 {
		return nil, "", errorf(ErrValidation, "EncryptionContext is not supported with asymmetric keys")
	}
	ct, err := rsa.EncryptOAEP(h, s.rand, &k.rsa.PublicKey, plaintext, nil)
	if err != nil {
		return nil, "", errorf(ErrValidation, "Plaintext too long for %s with %s: %v", k.KeySpec, alg, err)
	}
	return ct, alg, nil
}

// oaepHash returns the hash of an RSAES_OAEP_* algorithm.
func oaepHash(k *key, alg string) (hash.Hash, error) {
	switch alg {
	case AlgOAEPSHA1:
		return sha1.New(), nil
	case AlgOAEPSHA256:
		return sha256.New(), nil
	}
	return nil, errorf(ErrInvalidKeyUsage, "EncryptionAlgorithm %q is not valid for %s (want RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256)", alg, k.Arn)
}

// decryptWith decrypts a blob under k.
func decryptWith(k *key, alg string, blob []byte, ctx map[string]string) ([]byte, string, error) {
	if err := keyUsage(k, UsageEncryptDecrypt, "Decrypt"); err != nil {
		return nil, "", err
	}
	if k.KeySpec == SpecSymmetricDefault {
		if alg != "" && alg != AlgSymmetric {
			return nil, "", errorf(ErrIncorrectKey, "EncryptionAlgorithm %s does not match %s", alg, k.Arn)
		}
		pt, err := openBlob(k.sym, blob, ctx)
		if err != nil {
			return nil, "", errorf(ErrInvalidCiphertext, "%v (or the encryption context does not match)", err)
		}
		return pt, AlgSymmetric, nil
	}
	h, err := oaepHash(k, alg)
	if err != nil {
		return nil, "", err
	}
	pt, err := rsa.DecryptOAEP(h, nil, k.rsa, blob, nil)
	if err != nil {
		return nil, "", errorf(ErrInvalidCiphertext, "ciphertext does not decrypt with %s and %s", k.Arn, alg)
	}
	return pt, alg, nil
}

// decryptKeyFor finds the key for a Decrypt-like request: the blob names
// symmetric keys; KeyId, when given, must agree; asymmetric keys need it.
func (s *Service) decryptKeyFor(blob []byte, keyID string, a access) (*key, error) {
	if len(blob) == 0 {
		return nil, errorf(ErrValidation, "CiphertextBlob is required")
	}
	if len(blob) > 6144 { // API reference: CiphertextBlob 1..6144 bytes
		return nil, errorf(ErrValidation, "CiphertextBlob is %d bytes, limit 6144", len(blob))
	}
	id, err := blobKeyID(blob)
	if err != nil {
		if keyID == "" {
			return nil, errorf(ErrInvalidCiphertext, "%v", err)
		}
		return s.useKey(keyID, a)
	}
	k, err := s.useKey(id, a)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Type == ErrNotFound {
			return nil, errorf(ErrInvalidCiphertext, "the key that encrypted this ciphertext does not exist")
		}
		return nil, err
	}
	if keyID != "" {
		want, err := s.lookup(keyID)
		if err != nil {
			return nil, err
		}
		if want.KeyID != k.KeyID {
			return nil, errorf(ErrIncorrectKey, "The key ID in the request does not identify a CMK that can perform this operation.")
		}
	}
	return k, nil
}

// Encrypt implements TrentService.Encrypt.
func (s *Service) Encrypt(req *EncryptRequest) (*EncryptResponse, error) {
	if n := len(req.Plaintext); n == 0 || n > MaxPlaintextBytes {
		return nil, errorf(ErrValidation, "Plaintext is %d bytes, want 1..%d", n, MaxPlaintextBytes)
	}
	k, err := s.useKey(req.KeyId, access{action: "Encrypt", ctx: req.EncryptionContext})
	if err != nil {
		return nil, err
	}
	blob, alg, err := s.encryptWith(k, req.EncryptionAlgorithm, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &EncryptResponse{CiphertextBlob: blob, KeyId: k.Arn, EncryptionAlgorithm: alg}, nil
}

// Decrypt implements TrentService.Decrypt, with Recipient.
func (s *Service) Decrypt(req *DecryptRequest) (*DecryptResponse, error) {
	rcp, err := s.verifyRecipient(req.Recipient)
	if err != nil {
		return nil, err
	}
	k, err := s.decryptKeyFor(req.CiphertextBlob, req.KeyId, access{action: "Decrypt", ctx: req.EncryptionContext, recipient: rcp})
	if err != nil {
		return nil, err
	}
	pt, alg, err := decryptWith(k, req.EncryptionAlgorithm, req.CiphertextBlob, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	out := &DecryptResponse{KeyId: k.Arn, EncryptionAlgorithm: alg}
	if rcp != nil {
		out.CiphertextForRecipient, err = rcp.seal(s.rand, pt)
		return out, err
	}
	out.Plaintext = pt
	return out, nil
}

// ReEncrypt implements TrentService.ReEncrypt.
func (s *Service) ReEncrypt(req *ReEncryptRequest) (*ReEncryptResponse, error) {
	src, err := s.decryptKeyFor(req.CiphertextBlob, req.SourceKeyId, access{action: "ReEncryptFrom", ctx: req.SourceEncryptionContext})
	if err != nil {
		return nil, err
	}
	pt, srcAlg, err := decryptWith(src, req.SourceEncryptionAlgorithm, req.CiphertextBlob, req.SourceEncryptionContext)
	if err != nil {
		return nil, err
	}
	dst, err := s.useKey(req.DestinationKeyId, access{action: "ReEncryptTo", ctx: req.DestinationEncryptionContext})
	if err != nil {
		return nil, err
	}
	blob, dstAlg, err := s.encryptWith(dst, req.DestinationEncryptionAlgorithm, pt, req.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return &ReEncryptResponse{CiphertextBlob: blob, SourceKeyId: src.Arn, KeyId: dst.Arn, SourceEncryptionAlgorithm: srcAlg, DestinationEncryptionAlgorithm: dstAlg}, nil
}

// dataKeySize returns the size GenerateDataKey's KeySpec or NumberOfBytes
// asks for (exactly one must be given).
func dataKeySize(spec string, n int) (int, error) {
	switch {
	case spec != "" && n != 0:
		return 0, errorf(ErrValidation, "give KeySpec or NumberOfBytes, not both")
	case spec == "AES_256":
		return 32, nil
	case spec == "AES_128":
		return 16, nil
	case spec != "":
		return 0, errorf(ErrValidation, "KeySpec %q, want AES_256 or AES_128", spec)
	case n < 1 || n > MaxRandomBytes:
		return 0, errorf(ErrValidation, "NumberOfBytes %d, want 1..%d (or give KeySpec)", n, MaxRandomBytes)
	}
	return n, nil
}

// sealedSecret is a new secret (a data key or a key pair's private key)
// encrypted under a symmetric KMS key, and the copy its caller gets: the
// plaintext, the CiphertextForRecipient, or neither.
type sealedSecret struct {
	key          *key
	blob         []byte
	plaintext    []byte
	forRecipient []byte
}

// newSealedSecret is what GenerateDataKey and GenerateDataKeyPair share:
// verify the Recipient (only when plain, the operations WithoutPlaintext take
// none), check the policy and that keyID is a symmetric key, make the secret
// with gen, encrypt it under the key and hand it out as plain asks.
func (s *Service) newSealedSecret(keyID string, r *RecipientInfo, ectx map[string]string, action string, plain bool, gen func() ([]byte, error)) (*sealedSecret, error) {
	var rcp *recipient
	var err error
	if plain {
		if rcp, err = s.verifyRecipient(r); err != nil {
			return nil, err
		}
	}
	k, err := s.useKey(keyID, access{action: action, ctx: ectx, recipient: rcp})
	if err != nil {
		return nil, err
	}
	if k.KeySpec != SpecSymmetricDefault {
		return nil, errorf(ErrInvalidKeyUsage, "%s is not a symmetric encryption key; %s needs one", k.Arn, action)
	}
	secret, err := gen()
	if err != nil {
		return nil, errorf(ErrInternal, "%v", err)
	}
	blob, _, err := s.encryptWith(k, AlgSymmetric, secret, ectx)
	if err != nil {
		return nil, err
	}
	out := &sealedSecret{key: k, blob: blob}
	switch {
	case rcp != nil:
		out.forRecipient, err = rcp.seal(s.rand, secret)
	case plain:
		out.plaintext = secret
	}
	return out, err
}

// generateDataKey is GenerateDataKey's body; plain says whether the plaintext
// is returned.
func (s *Service) generateDataKey(req *GenerateDataKeyRequest, action string, plain bool) (*GenerateDataKeyResponse, error) {
	n, err := dataKeySize(req.KeySpec, req.NumberOfBytes)
	if err != nil {
		return nil, err
	}
	sec, err := s.newSealedSecret(req.KeyId, req.Recipient, req.EncryptionContext, action, plain, func() ([]byte, error) {
		dk := make([]byte, n)
		_, err := io.ReadFull(s.rand, dk)
		return dk, err
	})
	if err != nil {
		return nil, err
	}
	return &GenerateDataKeyResponse{CiphertextBlob: sec.blob, KeyId: sec.key.Arn, Plaintext: sec.plaintext, CiphertextForRecipient: sec.forRecipient}, nil
}

// GenerateDataKey implements TrentService.GenerateDataKey, with Recipient.
func (s *Service) GenerateDataKey(req *GenerateDataKeyRequest) (*GenerateDataKeyResponse, error) {
	return s.generateDataKey(req, "GenerateDataKey", true)
}

// GenerateDataKeyWithoutPlaintext implements
// TrentService.GenerateDataKeyWithoutPlaintext.
func (s *Service) GenerateDataKeyWithoutPlaintext(req *GenerateDataKeyRequest) (*GenerateDataKeyResponse, error) {
	if req.Recipient != nil {
		return nil, errorf(ErrValidation, "GenerateDataKeyWithoutPlaintext takes no Recipient")
	}
	return s.generateDataKey(req, "GenerateDataKeyWithoutPlaintext", false)
}

// generateDataKeyPair is GenerateDataKeyPair's body.
func (s *Service) generateDataKeyPair(req *GenerateDataKeyPairRequest, action string, plain bool) (*GenerateDataKeyPairResponse, error) {
	switch req.KeyPairSpec {
	case SpecRSA2048, SpecRSA3072, SpecRSA4096, SpecECCP256, SpecECCP384, SpecECCP521:
	default:
		return nil, errorf(ErrValidation, "KeyPairSpec %q is not supported (RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521)", req.KeyPairSpec)
	}
	var pubDER []byte
	sec, err := s.newSealedSecret(req.KeyId, req.Recipient, req.EncryptionContext, action, plain, func() ([]byte, error) {
		priv, err := newPrivateKey(s.rand, req.KeyPairSpec)
		if err != nil {
			return nil, err
		}
		if pubDER, err = x509.MarshalPKIXPublicKey(priv.Public()); err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(priv)
	})
	if err != nil {
		return nil, err
	}
	return &GenerateDataKeyPairResponse{
		PrivateKeyCiphertextBlob: sec.blob, PublicKey: pubDER, KeyId: sec.key.Arn, KeyPairSpec: req.KeyPairSpec,
		PrivateKeyPlaintext: sec.plaintext, CiphertextForRecipient: sec.forRecipient,
	}, nil
}

// GenerateDataKeyPair implements TrentService.GenerateDataKeyPair, with
// Recipient.
func (s *Service) GenerateDataKeyPair(req *GenerateDataKeyPairRequest) (*GenerateDataKeyPairResponse, error) {
	return s.generateDataKeyPair(req, "GenerateDataKeyPair", true)
}

// GenerateDataKeyPairWithoutPlaintext implements
// TrentService.GenerateDataKeyPairWithoutPlaintext.
func (s *Service) GenerateDataKeyPairWithoutPlaintext(req *GenerateDataKeyPairRequest) (*GenerateDataKeyPairResponse, error) {
	if req.Recipient != nil {
		return nil, errorf(ErrValidation, "GenerateDataKeyPairWithoutPlaintext takes no Recipient")
	}
	return s.generateDataKeyPair(req, "GenerateDataKeyPairWithoutPlaintext", false)
}

// GenerateRandom implements TrentService.GenerateRandom, with Recipient. No
// key is involved, so no key policy applies; a Recipient's document must
// still verify.
func (s *Service) GenerateRandom(req *GenerateRandomRequest) (*GenerateRandomResponse, error) {
	if req.CustomKeyStoreId != "" {
		return nil, errorf(ErrUnsupportedOperation, "GenerateRandom: custom key stores (CloudHSM, external) are not implemented by nitrovm's local KMS")
	}
	if req.NumberOfBytes < 1 || req.NumberOfBytes > MaxRandomBytes {
		return nil, errorf(ErrValidation, "NumberOfBytes %d, want 1..%d", req.NumberOfBytes, MaxRandomBytes)
	}
	rcp, err := s.verifyRecipient(req.Recipient)
	if err != nil {
		return nil, err
	}
	b := make([]byte, req.NumberOfBytes)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return nil, errorf(ErrInternal, "%v", err)
	}
	if rcp != nil {
		ct, err := rcp.seal(s.rand, b)
		return &GenerateRandomResponse{CiphertextForRecipient: ct}, err
	}
	return &GenerateRandomResponse{Plaintext: b}, nil
}

// signingHash returns the hash and scheme of a signing algorithm valid for k.
func signingHash(k *key, alg string) (crypto.Hash, bool, error) {
	valid := false
	for _, a := range signingAlgorithms(k.KeySpec) {
		valid = valid || a == alg
	}
	if !valid {
		return 0, false, errorf(ErrInvalidKeyUsage, "SigningAlgorithm %q is not valid for %s (valid: %s)", alg, k.Arn, strings.Join(signingAlgorithms(k.KeySpec), ", "))
	}
	h := crypto.SHA256
	switch {
	case strings.HasSuffix(alg, "_384"):
		h = crypto.SHA384
	case strings.HasSuffix(alg, "_512"):
		h = crypto.SHA512
	}
	return h, strings.HasPrefix(alg, "RSASSA_PSS_"), nil
}

// digest returns the digest Sign and Verify work on.
func digest(h crypto.Hash, msg []byte, msgType string) ([]byte, error) {
	switch msgType {
	case "", "RAW":
		if len(msg) == 0 || len(msg) > MaxMessageBytes {
			return nil, errorf(ErrValidation, "Message is %d bytes, want 1..%d", len(msg), MaxMessageBytes)
		}
		d := h.New()
		d.Write(msg)
		return d.Sum(nil), nil
	case "DIGEST":
		if len(msg) != h.Size() {
			return nil, errorf(ErrValidation, "Digest is %d bytes, want %d for %s", len(msg), h.Size(), h)
		}
		return msg, nil
	}
	return nil, errorf(ErrValidation, "MessageType %q, want RAW or DIGEST", msgType)
}

// signPrep checks a Sign/Verify request and returns key, hash, PSS flag
// and digest.
func (s *Service) signPrep(req *SignRequest, action string) (*key, crypto.Hash, bool, []byte, error) {
	k, err := s.useKey(req.KeyId, access{action: action})
	if err != nil {
		return nil, 0, false, nil, err
	}
	if err := keyUsage(k, UsageSignVerify, action); err != nil {
		return nil, 0, false, nil, err
	}
	h, pss, err := signingHash(k, req.SigningAlgorithm)
	if err != nil {
		return nil, 0, false, nil, err
	}
	d, err := digest(h, req.Message, req.MessageType)
	return k, h, pss, d, err
}

// Sign implements TrentService.Sign. ECDSA signatures are DER, as in KMS.
func (s *Service) Sign(req *SignRequest) (*SignResponse, error) {
	k, h, pss, d, err := s.signPrep(req, "Sign")
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch {
	case k.ecdsa != nil:
		sig, err = ecdsa.SignASN1(s.rand, k.ecdsa, d)
	case pss:
		sig, err = rsa.SignPSS(s.rand, k.rsa, h, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default:
		sig, err = rsa.SignPKCS1v15(nil, k.rsa, h, d)
	}
	if err != nil {
		return nil, errorf(ErrInternal, "sign: %v", err)
	}
	return &SignResponse{KeyId: k.Arn, Signature: sig, SigningAlgorithm: req.SigningAlgorithm}, nil
}

// Verify implements TrentService.Verify: an invalid signature is
// KMSInvalidSignatureException, as in KMS.
func (s *Service) Verify(req *SignRequest) (*VerifyResponse, error) {
	k, h, pss, d, err := s.signPrep(req, "Verify")
	if err != nil {
		return nil, err
	}
	ok := false
	switch {
	case k.ecdsa != nil:
		ok = ecdsa.VerifyASN1(&k.ecdsa.PublicKey, d, req.Signature)
	case pss:
		ok = rsa.VerifyPSS(&k.rsa.PublicKey, h, d, req.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	default:
		ok = rsa.VerifyPKCS1v15(&k.rsa.PublicKey, h, d, req.Signature) == nil
	}
	if !ok {
		return nil, errorf(ErrInvalidSignature, "signature does not verify with %s and %s", k.Arn, req.SigningAlgorithm)
	}
	return &VerifyResponse{KeyId: k.Arn, SignatureValid: true, SigningAlgorithm: req.SigningAlgorithm}, nil
}

// mac computes an HMAC_SHA_256 request's MAC.
func (s *Service) mac(req *MacRequest, action string) (*key, []byte, error) {
	k, err := s.useKey(req.KeyId, access{action: action})
	if err != nil {
		return nil, nil, err
	}
	if err := keyUsage(k, UsageMac, action); err != nil {
		return nil, nil, err
	}
	if req.MacAlgorithm != AlgHMACSHA256 {
		return nil, nil, errorf(ErrInvalidKeyUsage, "MacAlgorithm %q is not valid for %s (valid: HMAC_SHA_256)", req.MacAlgorithm, k.Arn)
	}
	if len(req.Message) == 0 || len(req.Message) > MaxMessageBytes {
		return nil, nil, errorf(ErrValidation, "Message is %d bytes, want 1..%d", len(req.Message), MaxMessageBytes)
	}
	m := hmac.New(sha256.New, k.sym)
	m.Write(req.Message)
	return k, m.Sum(nil), nil
}

// GenerateMac implements TrentService.GenerateMac.
func (s *Service) GenerateMac(req *MacRequest) (*MacResponse, error) {
	k, m, err := s.mac(req, "GenerateMac")
	if err != nil {
		return nil, err
	}
	return &MacResponse{KeyId: k.Arn, Mac: m, MacAlgorithm: req.MacAlgorithm}, nil
}

// VerifyMac implements TrentService.VerifyMac.
func (s *Service) VerifyMac(req *MacRequest) (*MacResponse, error) {
	k, m, err := s.mac(req, "VerifyMac")
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(m, req.Mac) {
		return nil, errorf(ErrInvalidMac, "MAC does not verify with %s", k.Arn)
	}
	return &MacResponse{KeyId: k.Arn, MacValid: true, MacAlgorithm: req.MacAlgorithm}, nil
}

// GetPublicKey implements TrentService.GetPublicKey.
func (s *Service) GetPublicKey(req *KeyIDRequest) (*GetPublicKeyResponse, error) {
	k, err := s.useKey(req.KeyId, access{action: "GetPublicKey"})
	if err != nil {
		return nil, err
	}
	if k.pubDER == nil {
		return nil, errorf(ErrUnsupportedOperation, "%s is not an asymmetric key", k.Arn)
	}
	m := k.metadata(s.account)
	return &GetPublicKeyResponse{
		KeyId: k.Arn, PublicKey: k.pubDER, KeySpec: k.KeySpec, CustomerMasterKeySpec: k.KeySpec, KeyUsage: k.KeyUsage,
		EncryptionAlgorithms: m.EncryptionAlgorithms, SigningAlgorithms: m.SigningAlgorithms, KeyAgreementAlgorithms: m.KeyAgreementAlgorithms,
	}, nil
}

// DeriveSharedSecret implements TrentService.DeriveSharedSecret (ECDH),
// with Recipient.
func (s *Service) DeriveSharedSecret(req *DeriveSharedSecretRequest) (*DeriveSharedSecretResponse, error) {
	if req.KeyAgreementAlgorithm != AlgECDH {
		return nil, errorf(ErrValidation, "KeyAgreementAlgorithm %q, want ECDH", req.KeyAgreementAlgorithm)
	}
	rcp, err := s.verifyRecipient(req.Recipient)
	if err != nil {
		return nil, err
	}
	k, err := s.useKey(req.KeyId, access{action: "DeriveSharedSecret", recipient: rcp})
	if err != nil {
		return nil, err
	}
	if err := keyUsage(k, UsageKeyAgreement, "DeriveSharedSecret"); err != nil {
		return nil, err
	}
	pk, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return nil, errorf(ErrValidation, "PublicKey is not a DER SubjectPublicKeyInfo: %v", err)
	}
	ep, ok := pk.(*ecdsa.PublicKey)
	if !ok || ep.Curve != k.ecdsa.Curve {
		return nil, errorf(ErrValidation, "PublicKey must be an EC key on the curve of %s (%s)", k.Arn, k.KeySpec)
	}
	peer, err := ep.ECDH()
	if err != nil {
		return nil, errorf(ErrValidation, "PublicKey: %v", err)
	}
	secret, err := k.ecdh.ECDH(peer)
	if err != nil {
		return nil, errorf(ErrValidation, "ECDH: %v", err)
	}
	out := &DeriveSharedSecretResponse{KeyId: k.Arn, KeyAgreementAlgorithm: AlgECDH, KeyOrigin: "AWS_KMS"}
	if rcp != nil {
		out.CiphertextForRecipient, err = rcp.seal(s.rand, secret)
		return out, err
	}
	out.SharedSecret = secret
	return out, nil
}

package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// This file encodes CiphertextForRecipient: a CMS (RFC 5652) ContentInfo
// holding EnvelopedData, in BER, with the layout AWS KMS returns. AWS's C SDK
// (aws-nitro-enclaves-sdk-c source/cms.c) skips indefinite-length headers
// but consumes definite-length elements whole, so ContentInfo, its [0],
// EnvelopedData and EncryptedContentInfo must use indefinite lengths; the
// rest is DER.

// Object identifiers, DER-encoded content octets.
var (
	oidEnvelopedData = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03} // 1.2.840.113549.1.7.3, RFC 5652 §6
	oidData          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01} // 1.2.840.113549.1.7.1, RFC 5652 §4
	oidRSAESOAEP     = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07} // 1.2.840.113549.1.1.7, RFC 8017 A.1
	oidMGF1          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08} // 1.2.840.113549.1.1.8, RFC 8017 A.2.1
	oidSHA256        = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01} // 2.16.840.1.101.3.4.2.1, RFC 5754 §2
	oidAES256CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a} // 2.16.840.1.101.3.4.1.42, RFC 3565 §4.1
)

// ASN.1 identifier octets used by the envelope (X.690 §8.1.2).
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagNull        = 0x05
	tagOID         = 0x06
	tagSequence    = 0x30 // constructed
	tagSet         = 0x31 // constructed
	tagContext0    = 0xa0 // [0] constructed
	tagContext1    = 0xa1 // [1] constructed
	tagContext0Pri = 0x80 // [0] primitive
	berIndefinite  = 0x80 // length octet of an indefinite-length element
)

// Envelope sizes.
const (
	// ContentKeyBytes is the AES-256 content-encryption key size.
	ContentKeyBytes = 32
	// ivBytes is the AES-CBC IV size.
	ivBytes = aes.BlockSize
	// RecipientVersion is the CMS version of EnvelopedData and of its
	// KeyTransRecipientInfo when rid is a subjectKeyIdentifier (RFC 5652
	// §6.1, §6.2.1); AWS's parsers require it.
	RecipientVersion = 2
)

// SubjectKeyID returns the rid KMS uses for a recipient: the SHA-256 of the
// recipient's SubjectPublicKeyInfo DER.
func SubjectKeyID(spkiDER []byte) []byte {
	h := sha256.Sum256(spkiDER)
	return h[:]
}

// SealEnvelope encrypts plaintext for the RSA key pub (whose SPKI DER is
// spkiDER) and returns the BER CMS EnvelopedData KMS calls
// CiphertextForRecipient: a random AES-256 key encrypts plaintext in CBC
// mode with PKCS#7 padding, and RSAES-OAEP (SHA-256, MGF1-SHA-256, empty
// label) encrypts that key for pub.
func SealEnvelope(rnd io.Reader, pub *rsa.PublicKey, spkiDER, plaintext []byte) ([]byte, error) {
	var key [ContentKeyBytes]byte
	var iv [ivBytes]byte
	if _, err := io.ReadFull(rnd, key[:]); err != nil {
		return nil, fmt.Errorf("kms: envelope key: %w", err)
	}
	if _, err := io.ReadFull(rnd, iv[:]); err != nil {
		return nil, fmt.Errorf("kms: envelope iv: %w", err)
	}
	ek, err := rsa.EncryptOAEP(sha256.New(), rnd, pub, key[:], nil)
	if err != nil {
		return nil, fmt.Errorf("kms: encrypt envelope key: %w", err)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	ct := pkcs7Pad(plaintext, aes.BlockSize)
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(ct, ct)
	return encodeEnvelope(SubjectKeyID(spkiDER), ek, iv[:], ct), nil
}

// encodeEnvelope lays out the envelope; see KMS.md for the byte map.
func encodeEnvelope(ski, encryptedKey, iv, ciphertext []byte) []byte {
	sha256ID := tlv(tagSequence, tlv(tagOID, oidSHA256), tlv(tagNull))
	oaepParams := tlv(tagSequence,
		tlv(tagContext0, sha256ID), // hashFunc
		tlv(tagContext1, tlv(tagSequence, tlv(tagOID, oidMGF1), sha256ID)), // maskGenFunc
	)
	ri := tlv(tagSequence,
		tlv(tagInteger, []byte{RecipientVersion}),
		tlv(tagContext0Pri, ski),
		tlv(tagSequence, tlv(tagOID, oidRSAESOAEP), oaepParams),
		tlv(tagOctetString, encryptedKey),
	)
	contentAlg := tlv(tagSequence, tlv(tagOID, oidAES256CBC), tlv(tagOctetString, iv))

	var b []byte
	b = append(b, tagSequence, berIndefinite) // ContentInfo
	b = append(b, tlv(tagOID, oidEnvelopedData)...)
	b = append(b, tagContext0, berIndefinite) // [0] EXPLICIT content
	b = append(b, tagSequence, berIndefinite) // EnvelopedData
	b = append(b, tlv(tagInteger, []byte{RecipientVersion})...)
	b = append(b, tlv(tagSet, ri)...)
	b = append(b, tagSequence, berIndefinite) // EncryptedContentInfo
	b = append(b, tlv(tagOID, oidData)...)
	b = append(b, contentAlg...)
	b = append(b, tagContext0, berIndefinite) // [0] IMPLICIT OCTET STRING, constructed
	b = append(b, tlv(tagOctetString, ciphertext)...)
	b = append(b, 0, 0) // end of [0] encryptedContent
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0)
}

// tlv returns a definite-length element with the given identifier octet.
func tlv(tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := appendLength([]byte{tag}, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// appendLength appends a DER definite length (X.690 §8.1.3).
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0x81, byte(n))
	case n <= 0xffff:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// pkcs7Pad returns a copy of b padded to a multiple of size (RFC 5652 §6.3).
func pkcs7Pad(b []byte, size int) []byte {
	p := size - len(b)%size
	out := make([]byte, len(b), len(b)+p)
	copy(out, b)
	for range p {
		out = append(out, byte(p))
	}
	return out
}

// errPadding reports bad PKCS#7 padding after CBC decryption.
var errPadding = errors.New("kms: envelope: bad padding")

// pkcs7Unpad removes PKCS#7 padding.
func pkcs7Unpad(b []byte, size int) ([]byte, error) {
	if len(b) == 0 || len(b)%size != 0 {
		return nil, errPadding
	}
	p := int(b[len(b)-1])
	if p == 0 || p > size {
		return nil, errPadding
	}
	for _, c := range b[len(b)-p:] {
		if int(c) != p {
			return nil, errPadding
		}
	}
	return b[:len(b)-p], nil
}

package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"io"
	"sort"
)

// Symmetric ciphertext blobs are nitrovm's own format (real KMS's is
// undocumented): the key ID travels inside, so Decrypt needs no KeyId, and
// the encryption context is bound as AES-GCM additional data.
//
//	magic "nvk\x01" | key ID length (1 byte) | key ID | nonce (12) | AES-256-GCM ciphertext and tag
//
// The additional data is the header (magic through key ID) followed by the
// encryption context: pairs sorted by key, each key and value preceded by
// its length as a big-endian uint32.

// blobMagic opens every symmetric ciphertext blob.
var blobMagic = []byte("nvk\x01")

const (
	gcmNonceBytes = 12 // AES-GCM standard nonce size (NIST SP 800-38D §5.2.1.1)
	gcmTagBytes   = 16
	maxKeyIDBytes = 255
)

// errBlob is returned for any blob that is not ours or does not decrypt.
var errBlob = errors.New("ciphertext blob is malformed or was not produced by this KMS")

// blobKeyID returns the key ID a blob names.
func blobKeyID(blob []byte) (string, error) {
	if len(blob) < len(blobMagic)+1 || !bytes.Equal(blob[:len(blobMagic)], blobMagic) {
		return "", errBlob
	}
	n := int(blob[len(blobMagic)])
	end := len(blobMagic) + 1 + n
	if n == 0 || len(blob) < end+gcmNonceBytes+gcmTagBytes {
		return "", errBlob
	}
	return string(blob[len(blobMagic)+1 : end]), nil
}

// sealBlob encrypts plaintext under material for keyID, binding ctx.
func sealBlob(rnd io.Reader, keyID string, material, plaintext []byte, ctx map[string]string) ([]byte, error) {
	if len(keyID) == 0 || len(keyID) > maxKeyIDBytes {
		return nil, errors.New("kms: bad key ID length")
	}
	gcm, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	hdr := append(append([]byte{}, blobMagic...), byte(len(keyID)))
	hdr = append(hdr, keyID...)
	out := make([]byte, len(hdr)+gcmNonceBytes, len(hdr)+gcmNonceBytes+len(plaintext)+gcmTagBytes)
	copy(out, hdr)
	nonce := out[len(hdr):]
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(out, nonce, plaintext, additionalData(hdr, ctx)), nil
}

// openBlob decrypts a blob whose key ID names material.
func openBlob(material, blob []byte, ctx map[string]string) ([]byte, error) {
	id, err := blobKeyID(blob)
	if err != nil {
		return nil, err
	}
	hdrLen := len(blobMagic) + 1 + len(id)
	gcm, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	nonce := blob[hdrLen : hdrLen+gcmNonceBytes]
	pt, err := gcm.Open(nil, nonce, blob[hdrLen+gcmNonceBytes:], additionalData(blob[:hdrLen], ctx))
	if err != nil {
		return nil, errBlob
	}
	return pt, nil
}

func newGCM(material []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// additionalData is hdr followed by the canonical encoding of ctx.
func additionalData(hdr []byte, ctx map[string]string) []byte {
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ad := append([]byte{}, hdr...)
	for _, k := range keys {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(k)))
		ad = append(ad, k...)
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(ctx[k])))
		ad = append(ad, ctx[k]...)
	}
	return ad
}

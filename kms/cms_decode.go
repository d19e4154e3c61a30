package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
)

// This file decodes the envelope SealEnvelope produces. It reads BER
// (X.690 §8) including indefinite lengths, bounded in depth and size, and
// is what an enclave uses to open CiphertextForRecipient; the tests use it
// to check the encoder structurally. Input is untrusted.

// Decoder limits.
const (
	// berMaxDepth bounds nesting; the envelope is 7 levels deep.
	berMaxDepth = 16
	// MaxEnvelopeBytes bounds an envelope accepted by ParseEnvelope
	// (the largest KMS plaintext, 4 KiB, plus the RSA-4096 key and headers).
	MaxEnvelopeBytes = 64 << 10
)

// ErrEnvelope is wrapped by every ParseEnvelope and Open failure.
var ErrEnvelope = errors.New("kms: malformed CiphertextForRecipient")

// berNode is one decoded BER element.
type berNode struct {
	tag        byte // identifier octet (class, constructed bit, low tag number)
	indefinite bool // encoded with an indefinite length
	content    []byte
	children   []berNode // for constructed elements
}

func (n *berNode) constructed() bool { return n.tag&0x20 != 0 }

// parseBER decodes one element at the start of b and returns it and the
// remaining bytes.
func parseBER(b []byte, depth int) (berNode, []byte, error) {
	var n berNode
	if depth > berMaxDepth {
		return n, nil, errors.New("nesting too deep")
	}
	if len(b) < 2 {
		return n, nil, errors.New("truncated header")
	}
	n.tag = b[0]
	if n.tag&0x1f == 0x1f {
		return n, nil, fmt.Errorf("high tag number in identifier %#02x", n.tag)
	}
	l := int(b[1])
	b = b[2:]
	if l == berIndefinite {
		if !n.constructed() {
			return n, nil, fmt.Errorf("indefinite length on primitive element %#02x", n.tag)
		}
		n.indefinite = true
		for {
			if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
				return n, b[2:], nil
			}
			if len(b) == 0 {
				return n, nil, errors.New("missing end-of-contents")
			}
			c, rest, err := parseBER(b, depth+1)
			if err != nil {
				return n, nil, err
			}
			n.children = append(n.children, c)
			b = rest
		}
	}
	if l > 0x80 {
		k := l & 0x7f
		if k > 4 || k > len(b) {
			return n, nil, fmt.Errorf("bad length of length %d", k)
		}
		l = 0
		for _, c := range b[:k] {
			l = l<<8 | int(c)
		}
		b = b[k:]
	}
	if l > len(b) {
		return n, nil, fmt.Errorf("length %d exceeds the %d bytes left", l, len(b))
	}
	n.content, b = b[:l], b[l:]
	if n.constructed() {
		for rest := n.content; len(rest) > 0; {
			c, r, err := parseBER(rest, depth+1)
			if err != nil {
				return n, nil, err
			}
			n.children = append(n.children, c)
			rest = r
		}
	}
	return n, b, nil
}

// Envelope is a parsed CiphertextForRecipient.
type Envelope struct {
	Version          int    // EnvelopedData version
	RecipientVersion int    // KeyTransRecipientInfo version
	SubjectKeyID     []byte // rid [0]
	EncryptedKey     []byte // RSA-OAEP encrypted content key
	IV               []byte // AES-256-CBC IV
	Ciphertext       []byte // encrypted content
	// Indefinite reports, for ContentInfo, its [0], EnvelopedData and
	// EncryptedContentInfo, whether each used an indefinite length.
	Indefinite [4]bool
}

// ParseEnvelope decodes a CMS ContentInfo holding EnvelopedData with one
// KeyTransRecipientInfo (subjectKeyIdentifier, RSAES-OAEP with SHA-256 and
// MGF1-SHA-256) and AES-256-CBC content, in BER or DER.
func ParseEnvelope(b []byte) (*Envelope, error) {
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	return e, nil
}

func parseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeBytes {
		return nil, fmt.Errorf("%d bytes, limit %d", len(b), MaxEnvelopeBytes)
	}
	ci, rest, err := parseBER(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(rest))
	}
	var e Envelope
	if err := want(&ci, tagSequence, 2, "ContentInfo"); err != nil {
		return nil, err
	}
	if err := wantOID(&ci.children[0], oidEnvelopedData, "contentType"); err != nil {
		return nil, err
	}
	wrap := &ci.children[1]
	if err := want(wrap, tagContext0, 1, "ContentInfo [0]"); err != nil {
		return nil, err
	}
	ed := &wrap.children[0]
	if err := want(ed, tagSequence, 3, "EnvelopedData"); err != nil {
		return nil, err
	}
	if e.Version, err = smallInt(&ed.children[0], "EnvelopedData version"); err != nil {
		return nil, err
	}
	set := &ed.children[1]
	if err := want(set, tagSet, 1, "recipientInfos"); err != nil {
		return nil, err
	}
	ri := &set.children[0]
	if err := want(ri, tagSequence, 4, "KeyTransRecipientInfo"); err != nil {
		return nil, err
	}
	if e.RecipientVersion, err = smallInt(&ri.children[0], "KeyTransRecipientInfo version"); err != nil {
		return nil, err
	}
	if ri.children[1].tag != tagContext0Pri {
		return nil, fmt.Errorf("rid: tag %#02x, want subjectKeyIdentifier [0]", ri.children[1].tag)
	}
	e.SubjectKeyID = ri.children[1].content
	if err := checkOAEP(&ri.children[2]); err != nil {
		return nil, err
	}
	if ri.children[3].tag != tagOctetString {
		return nil, errors.New("encryptedKey: not an OCTET STRING")
	}
	e.EncryptedKey = ri.children[3].content
	eci := &ed.children[2]
	if err := want(eci, tagSequence, 3, "EncryptedContentInfo"); err != nil {
		return nil, err
	}
	if err := wantOID(&eci.children[0], oidData, "EncryptedContentInfo contentType"); err != nil {
		return nil, err
	}
	alg := &eci.children[1]
	if err := want(alg, tagSequence, 2, "contentEncryptionAlgorithm"); err != nil {
		return nil, err
	}
	if err := wantOID(&alg.children[0], oidAES256CBC, "content algorithm"); err != nil {
		return nil, err
	}
	if alg.children[1].tag != tagOctetString || len(alg.children[1].content) != ivBytes {
		return nil, errors.New("content algorithm: IV is not a 16-byte OCTET STRING")
	}
	e.IV = alg.children[1].content
	if e.Ciphertext, err = octets(&eci.children[2]); err != nil {
		return nil, err
	}
	e.Indefinite = [4]bool{ci.indefinite, wrap.indefinite, ed.indefinite, eci.indefinite}
	return &e, nil
}

// want checks n's identifier and number of children.
func want(n *berNode, tag byte, children int, what string) error {
	if n.tag != tag {
		return fmt.Errorf("%s: tag %#02x, want %#02x", what, n.tag, tag)
	}
	if len(n.children) != children {
		return fmt.Errorf("%s: %d elements, want %d", what, len(n.children), children)
	}
	return nil
}

func wantOID(n *berNode, oid []byte, what string) error {
	if n.tag != tagOID || !bytes.Equal(n.content, oid) {
		return fmt.Errorf("%s: unexpected object identifier %x", what, n.content)
	}
	return nil
}

func smallInt(n *berNode, what string) (int, error) {
	if n.tag != tagInteger || len(n.content) != 1 {
		return 0, fmt.Errorf("%s: not a small INTEGER", what)
	}
	return int(n.content[0]), nil
}

// checkOAEP checks an RSAES-OAEP AlgorithmIdentifier with SHA-256 and
// MGF1-SHA-256 (RFC 8017 A.2.1); absent parameters mean SHA-1 and are
// refused.
func checkOAEP(n *berNode) error {
	if err := want(n, tagSequence, 2, "keyEncryptionAlgorithm"); err != nil {
		return err
	}
	if err := wantOID(&n.children[0], oidRSAESOAEP, "keyEncryptionAlgorithm"); err != nil {
		return err
	}
	p := &n.children[1]
	if err := want(p, tagSequence, 2, "RSAES-OAEP-params"); err != nil {
		return err
	}
	h := &p.children[0]
	if err := want(h, tagContext0, 1, "hashFunc"); err != nil {
		return err
	}
	if err := wantHash(&h.children[0], "hashFunc"); err != nil {
		return err
	}
	m := &p.children[1]
	if err := want(m, tagContext1, 1, "maskGenFunc"); err != nil {
		return err
	}
	mg := &m.children[0]
	if err := want(mg, tagSequence, 2, "maskGenFunc"); err != nil {
		return err
	}
	if err := wantOID(&mg.children[0], oidMGF1, "maskGenFunc"); err != nil {
		return err
	}
	return wantHash(&mg.children[1], "MGF1 hash")
}

func wantHash(n *berNode, what string) error {
	if n.tag != tagSequence || len(n.children) < 1 || len(n.children) > 2 {
		return fmt.Errorf("%s: not an AlgorithmIdentifier", what)
	}
	return wantOID(&n.children[0], oidSHA256, what)
}

// octets returns the content of a [0] IMPLICIT OCTET STRING, primitive or
// constructed from primitive segments.
func octets(n *berNode) ([]byte, error) {
	switch n.tag {
	case tagContext0Pri:
		return n.content, nil
	case tagContext0:
		var out []byte
		for i := range n.children {
			if n.children[i].tag != tagOctetString {
				return nil, errors.New("encryptedContent: segment is not a primitive OCTET STRING")
			}
			out = append(out, n.children[i].content...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("encryptedContent: tag %#02x, want [0]", n.tag)
}

// Open decrypts the envelope with the recipient's private key.
func (e *Envelope) Open(priv *rsa.PrivateKey) ([]byte, error) {
	key, err := rsa.DecryptOAEP(sha256.New(), nil, priv, e.EncryptedKey, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: content key: %v", ErrEnvelope, err)
	}
	if len(key) != ContentKeyBytes {
		return nil, fmt.Errorf("%w: content key is %d bytes, want %d", ErrEnvelope, len(key), ContentKeyBytes)
	}
	if len(e.Ciphertext) == 0 || len(e.Ciphertext)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, not a positive multiple of %d", ErrEnvelope, len(e.Ciphertext), aes.BlockSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pt := make([]byte, len(e.Ciphertext))
	cipher.NewCBCDecrypter(block, e.IV).CryptBlocks(pt, e.Ciphertext)
	pt, err = pkcs7Unpad(pt, aes.BlockSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	return pt, nil
}

// OpenEnvelope parses a CiphertextForRecipient and decrypts it with priv.
func OpenEnvelope(b []byte, priv *rsa.PrivateKey) ([]byte, error) {
	e, err := ParseEnvelope(b)
	if err != nil {
		return nil, err
	}
	return e.Open(priv)
}

package attestation

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// ChainCache remembers certificate chains that Verify has verified, so
// that the documents of one enclave, which share their leaf certificate and
// cabundle, cost one ES384 check each (the document's signature) instead of
// one per certificate too. An entry is used only for the same leaf and
// cabundle bytes, the same roots pool, and a time inside every chain
// certificate's validity. The zero value is ready; safe for concurrent use.
type ChainCache struct {
	mu sync.Mutex
	m  map[[32]byte]chainEntry
}

// maxCachedChains bounds a ChainCache; when full it starts over.
const maxCachedChains = 1024

type chainEntry struct {
	roots               *x509.CertPool
	chain               []*x509.Certificate
	notBefore, notAfter time.Time
}

// chainKey is SHA-256 over the leaf and cabundle DER, each length-prefixed.
func chainKey(d *Document) [32]byte {
	h := sha256.New()
	var n [4]byte
	for _, der := range append([][]byte{d.Certificate}, d.CABundle...) {
		binary.BigEndian.PutUint32(n[:], uint32(len(der)))
		h.Write(n[:])
		h.Write(der)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// lookup returns the chain cached under key for roots and valid at now, or
// nil; a nil c caches nothing.
func (c *ChainCache) lookup(key [32]byte, roots *x509.CertPool, now time.Time) []*x509.Certificate {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.roots != roots || now.Before(e.notBefore) || now.After(e.notAfter) {
		return nil
	}
	return e.chain
}

// store caches a verified chain under key.
func (c *ChainCache) store(key [32]byte, roots *x509.CertPool, chain []*x509.Certificate) {
	if c == nil || len(chain) == 0 {
		return
	}
	e := chainEntry{roots: roots, chain: chain, notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, cert := range chain[1:] {
		if cert.NotBefore.After(e.notBefore) {
			e.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(e.notAfter) {
			e.notAfter = cert.NotAfter
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedChains {
		c.m = make(map[[32]byte]chainEntry)
	}
	c.m[key] = e
}

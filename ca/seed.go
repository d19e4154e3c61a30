package ca

import (
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
)

// SeededRand returns a reproducible byte stream for deterministic mode: a
// ChaCha8 generator keyed with SHA-256(seed). It is safe for concurrent use.
// Never use it outside tests and demos: anyone who knows the seed knows the
// keys.
func SeededRand(seed string) io.Reader {
	return &lockedReader{r: mrand.NewChaCha8(sha256.Sum256([]byte(seed)))}
}

// DeriveRand reads a 32-byte key from r and returns an independent ChaCha8
// stream keyed with it, safe for concurrent use. Deriving one stream per
// consumer up front keeps each consumer's bytes the same whether or not
// another consumer (say, CA creation) draws from r.
func DeriveRand(r io.Reader) (io.Reader, error) {
	var key [32]byte
	if _, err := io.ReadFull(r, key[:]); err != nil {
		return nil, fmt.Errorf("ca: derive random stream: %w", err)
	}
	return &lockedReader{r: mrand.NewChaCha8(key)}, nil
}

// LockedReader wraps r so that concurrent reads are serialised, for sources
// that are not safe for concurrent use. crypto/rand.Reader needs no wrapping.
func LockedReader(r io.Reader) io.Reader {
	if l, ok := r.(*lockedReader); ok {
		return l
	}
	return &lockedReader{r: r}
}

type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

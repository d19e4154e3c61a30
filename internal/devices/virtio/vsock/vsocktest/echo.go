package vsocktest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
)

// closeWriter is a connection whose sending side can be closed alone.
type closeWriter interface{ CloseWrite() error }

// Echo copies everything c sends back to it, then closes it.
func Echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	c.Close()
}

// ServeEcho runs Echo on every connection l accepts until l is closed.
func ServeEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go Echo(c)
	}
}

// CheckEcho sends n random bytes to an echo server on c while reading the
// echo, closes the sending side (c must have CloseWrite), and compares
// the SHA-256 of both. It closes c.
func CheckEcho(c io.ReadWriteCloser, n int64) error {
	defer c.Close()
	cw, ok := c.(closeWriter)
	if !ok {
		return fmt.Errorf("vsocktest: %T has no CloseWrite", c)
	}
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(c, sent), io.LimitReader(rand.Reader, n))
		if err == nil {
			err = cw.CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	m, err := io.Copy(got, c)
	if err != nil {
		return fmt.Errorf("vsocktest: read echo after %d bytes: %w", m, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("vsocktest: write: %w", err)
	}
	if m != n || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return fmt.Errorf("vsocktest: got %d bytes with SHA-256 %x, want %d bytes with %x", m, got.Sum(nil), n, sent.Sum(nil))
	}
	return nil
}

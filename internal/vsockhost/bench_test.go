package vsockhost

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock/vsocktest"
)

// benchEnv is env for benchmarks.
func benchEnv(b *testing.B, opts Options) *vsocktest.Guest {
	logger := slog.New(slog.DiscardHandler)
	h, err := New(opts, logger)
	if err != nil {
		b.Fatal(err)
	}
	dev, err := vsock.New(16, h, logger)
	if err != nil {
		b.Fatal(err)
	}
	if err := h.Serve(dev); err != nil {
		b.Fatal(err)
	}
	g, err := vsocktest.Start(dev, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close(); dev.Close(); h.Close() })
	return g
}

// BenchmarkUDSHostToEnclave measures a host program writing to an
// enclave port through the hybrid vsock Unix socket (MB/s).
func BenchmarkUDSHostToEnclave(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "v.sock")
	g := benchEnv(b, Options{UDSPath: sock})
	l, err := g.Listen(5005)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	c, _, err := dialUDS(sock, 5005)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUDSEnclaveToHost measures a host program reading from an
// enclave port through the hybrid vsock Unix socket (MB/s).
func BenchmarkUDSEnclaveToHost(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "v.sock")
	g := benchEnv(b, Options{UDSPath: sock})
	l, err := g.Listen(5005)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 1<<20)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, _, err := dialUDS(sock, 5005)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

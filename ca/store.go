package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Files in a CA state directory.
const (
	// StateFile holds the three CA certificates and keys as PEM, mode 0600.
	StateFile = "ca.pem"
	// RootFile is a public copy of the root certificate, mode 0644.
	RootFile = "root.pem"
	// lockFile serialises creation, renewal and rotation across processes.
	lockFile = "lock"
)

// ErrNoCA reports that a state directory holds no CA yet.
var ErrNoCA = errors.New("ca: no CA in state directory")

// DefaultDir returns the per-user CA state directory:
// $NITROVM_STATE_DIR/ca if set, else $XDG_STATE_HOME/nitrovm/ca, else
// $HOME/.local/state/nitrovm/ca.
func DefaultDir(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if d := getenv("NITROVM_STATE_DIR"); d != "" {
		return filepath.Join(d, "ca"), nil
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "nitrovm", "ca"), nil
	}
	if d := getenv("HOME"); d != "" {
		return filepath.Join(d, ".local", "state", "nitrovm", "ca"), nil
	}
	return "", errors.New("ca: no state directory: set NITROVM_STATE_DIR, XDG_STATE_HOME or HOME")
}

// LoadOrCreate loads the CA persisted in dir, creating dir and a new CA on
// first use and renewing intermediates that are about to expire. Concurrent
// callers, in one process or many, serialise on a lock file in dir and
// converge on one root.
func LoadOrCreate(dir string, opts Options) (*CA, error) {
	var c *CA
	err := withLock(dir, func() error {
		var err error
		c, err = load(dir, opts)
		if errors.Is(err, ErrNoCA) {
			if c, err = New(opts); err != nil {
				return err
			}
			return save(dir, c)
		}
		if err != nil || opts.NoRenew {
			return err
		}
		changed, err := c.renewIfDue(opts.now())
		if err != nil {
			return err
		}
		if changed {
			return save(dir, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Load loads the CA persisted in dir without creating or renewing anything.
// It returns an error wrapping ErrNoCA if there is none.
func Load(dir string, opts Options) (*CA, error) {
	var c *CA
	err := withLock(dir, func() error {
		var err error
		c, err = load(dir, opts)
		return err
	})
	return c, err
}

// Rotate replaces the CA in dir with a new one (new root, intermediates and
// keys). Documents signed under the old root no longer verify against the new
// one.
func Rotate(dir string, opts Options) (*CA, error) {
	var c *CA
	err := withLock(dir, func() error {
		var err error
		if c, err = New(opts); err != nil {
			return err
		}
		return save(dir, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// withLock runs fn holding an exclusive flock on dir's lock file.
func withLock(dir string, fn func() error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: create state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("ca: open lock file: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ca: lock %s: %w", dir, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

// PEM block types in StateFile, in order: root, regional, instance, each a
// certificate followed by its key.
const (
	pemCert = "CERTIFICATE"
	pemKey  = "EC PRIVATE KEY"
)

func load(dir string, opts Options) (*CA, error) {
	path := filepath.Join(dir, StateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %s", ErrNoCA, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: read state: %w", err)
	}
	certs, keys, err := decodeState(data)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", path, err)
	}
	c := &CA{
		Root: certs[0], Regional: certs[1], Instance: certs[2],
		rootKey: keys[0], regionalKey: keys[1], instanceKey: keys[2],
		opts: opts,
	}
	return c, nil
}

// decodeState parses StateFile's contents and checks that each key matches
// its certificate.
func decodeState(data []byte) ([3]*x509.Certificate, [3]*ecdsa.PrivateKey, error) {
	var certs [3]*x509.Certificate
	var keys [3]*ecdsa.PrivateKey
	rest := data
	for i := range 6 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certs, keys, fmt.Errorf("truncated: %d of 6 PEM blocks", i)
		}
		var err error
		if i%2 == 0 {
			if b.Type != pemCert {
				return certs, keys, fmt.Errorf("block %d: got %q, want %q", i, b.Type, pemCert)
			}
			certs[i/2], err = x509.ParseCertificate(b.Bytes)
		} else {
			if b.Type != pemKey {
				return certs, keys, fmt.Errorf("block %d: got %q, want %q", i, b.Type, pemKey)
			}
			keys[i/2], err = x509.ParseECPrivateKey(b.Bytes)
		}
		if err != nil {
			return certs, keys, fmt.Errorf("block %d: %w", i, err)
		}
	}
	for i := range 3 {
		if !keys[i].PublicKey.Equal(certs[i].PublicKey) {
			return certs, keys, fmt.Errorf("key %d does not match its certificate", i)
		}
	}
	return certs, keys, nil
}

// save writes c to dir atomically (temporary file, fsync, rename).
func save(dir string, c *CA) error {
	var buf bytes.Buffer
	for i, cert := range []*x509.Certificate{c.Root, c.Regional, c.Instance} {
		key := []*ecdsa.PrivateKey{c.rootKey, c.regionalKey, c.instanceKey}[i]
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return fmt.Errorf("ca: marshal key: %w", err)
		}
		buf.Write(certPEM(cert))
		buf.Write(pem.EncodeToMemory(&pem.Block{Type: pemKey, Bytes: der}))
	}
	if err := writeAtomic(dir, StateFile, buf.Bytes(), 0o600); err != nil {
		return err
	}
	return writeAtomic(dir, RootFile, c.RootPEM(), 0o644)
}

func writeAtomic(dir, name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	return nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: c.Raw})
}

// ParseRootPEM parses a PEM file holding one or more root certificates (as
// written by "nitrovm ca export") into a pool for verification.
func ParseRootPEM(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != pemCert {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: parse root certificate: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("ca: no PEM CERTIFICATE block in root file")
	}
	return pool, nil
}

package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

func testOpts(seed string) Options {
	return Options{Rand: SeededRand(seed), Now: func() time.Time { return testNow }}
}

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"state dir", map[string]string{"NITROVM_STATE_DIR": "/s", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/s/ca"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/nitrovm/ca"},
		{"home", map[string]string{"HOME": "/h"}, "/h/.local/state/nitrovm/ca"},
	}
	for _, tt := range tests {
		got, err := DefaultDir(func(k string) string { return tt.env[k] })
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v, want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := DefaultDir(nil); err == nil {
		t.Error("empty environment: got nil error, want one")
	}
}

// TestChainShape checks names, key usages, path lengths, validity and
// algorithms against the AWS-like shape the package documents.
func TestChainShape(t *testing.T) {
	c, err := New(testOpts("shape"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := c.IssueLeaf("i-0-enc1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		cert     *x509.Certificate
		cn       string
		isCA     bool
		pathLen  int
		validity time.Duration
		usage    x509.KeyUsage
	}{
		{"root", c.Root, RootCommonName, true, -1, RootValidity + time.Hour, x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature},
		{"regional", c.Regional, RegionalCommonName, true, 1, RegionalValidity + time.Hour, x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature},
		{"instance", c.Instance, InstanceCommonName, true, 0, InstanceValidity + time.Hour, x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature},
		{"leaf", leaf.Certificate, "i-0-enc1" + LeafNameSuffix, false, -1, LeafValidity, x509.KeyUsageDigitalSignature},
	}
	for _, tt := range tests {
		c := tt.cert
		if c.Subject.CommonName != tt.cn || c.Subject.Organization[0] != Organization {
			t.Errorf("%s: got subject %v, want CN %q O %q", tt.name, c.Subject, tt.cn, Organization)
		}
		if !strings.Contains(c.Subject.String(), "not AWS") {
			t.Errorf("%s: got subject %v, want it to say not AWS", tt.name, c.Subject)
		}
		if c.IsCA != tt.isCA || !c.BasicConstraintsValid {
			t.Errorf("%s: got IsCA %v, want %v", tt.name, c.IsCA, tt.isCA)
		}
		if tt.isCA && c.MaxPathLen != tt.pathLen {
			t.Errorf("%s: got MaxPathLen %d, want %d", tt.name, c.MaxPathLen, tt.pathLen)
		}
		if got := c.NotAfter.Sub(c.NotBefore); got != tt.validity {
			t.Errorf("%s: got validity %v, want %v", tt.name, got, tt.validity)
		}
		if c.KeyUsage != tt.usage {
			t.Errorf("%s: got key usage %b, want %b", tt.name, c.KeyUsage, tt.usage)
		}
		if c.SignatureAlgorithm != x509.ECDSAWithSHA384 || c.PublicKeyAlgorithm != x509.ECDSA {
			t.Errorf("%s: got %v/%v, want ECDSA-SHA384", tt.name, c.SignatureAlgorithm, c.PublicKeyAlgorithm)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	inter := x509.NewCertPool()
	inter.AddCert(c.Regional)
	inter.AddCert(c.Instance)
	if _, err := leaf.Certificate.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("leaf chain: %v", err)
	}
	if b := leaf.CABundle; len(b) != 3 || !bytes.Equal(b[0], c.Root.Raw) || !bytes.Equal(b[2], c.Instance.Raw) {
		t.Error("cabundle: got wrong order, want root, regional, instance")
	}
	if _, err := c.IssueLeaf(""); err == nil {
		t.Error("empty module ID: got nil error, want one")
	}
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Load(dir, Options{}); !errors.Is(err, ErrNoCA) {
		t.Fatalf("Load of empty dir: got %v, want ErrNoCA", err)
	}
	a, err := LoadOrCreate(dir, testOpts("p"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{StateFile: 0o600, RootFile: 0o644, ".": 0o700} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: got mode %o, want %o", name, got, want)
		}
	}
	b, err := LoadOrCreate(dir, Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Root.Equal(b.Root) || !a.Instance.Equal(b.Instance) {
		t.Error("reload: got a different CA, want the persisted one")
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, RootFile))
	if err != nil || !bytes.Equal(rootPEM, a.RootPEM()) {
		t.Errorf("root.pem: got %q (%v), want the root PEM", rootPEM, err)
	}
	if _, err := ParseRootPEM(rootPEM); err != nil {
		t.Errorf("ParseRootPEM: %v", err)
	}
	r, err := Rotate(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Root.Equal(a.Root) {
		t.Error("rotate: got the same root, want a new one")
	}
	c, err := Load(dir, Options{})
	if err != nil || !c.Root.Equal(r.Root) {
		t.Errorf("after rotate: got %v, want the rotated root", err)
	}
}

func TestRenewal(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(dir, testOpts("r"))
	if err != nil {
		t.Fatal(err)
	}
	norenew := Options{NoRenew: true, Now: func() time.Time { return testNow.Add(InstanceValidity) }}
	if n, err := LoadOrCreate(dir, norenew); err != nil || !n.Instance.Equal(a.Instance) {
		t.Errorf("NoRenew: got %v, want the old instance CA", err)
	}
	later := Options{Now: func() time.Time { return testNow.Add(InstanceValidity) }}
	b, err := LoadOrCreate(dir, later)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Root.Equal(a.Root) || !b.Regional.Equal(a.Regional) || b.Instance.Equal(a.Instance) {
		t.Error("instance renewal: got wrong certificates renewed, want only the instance CA")
	}
	much := Options{Now: func() time.Time { return testNow.Add(RegionalValidity) }}
	c, err := LoadOrCreate(dir, much)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Root.Equal(a.Root) || c.Regional.Equal(b.Regional) {
		t.Error("regional renewal: got wrong certificates renewed, want regional and instance")
	}
}

// TestConcurrentCreate starts many creators on one directory; all must end
// up with the same root.
func TestConcurrentCreate(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	roots := make([]*x509.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := LoadOrCreate(dir, Options{})
			errs[i] = err
			if err == nil {
				roots[i] = c.Root
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("creator %d: %v", i, errs[i])
		}
		if !roots[i].Equal(roots[0]) {
			t.Errorf("creator %d: got a different root, want one shared root", i)
		}
	}
}

func TestCorruptState(t *testing.T) {
	a, err := New(testOpts("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(testOpts("y"))
	if err != nil {
		t.Fatal(err)
	}
	good := t.TempDir()
	if err := save(good, a); err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(good, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := save(other, b); err != nil {
		t.Fatal(err)
	}
	otherState, _ := os.ReadFile(filepath.Join(other, StateFile))
	blocks := bytes.SplitAfter(state, []byte("-----END CERTIFICATE-----\n"))
	otherBlocks := bytes.SplitAfter(otherState, []byte("-----END CERTIFICATE-----\n"))
	tests := []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "truncated"},
		{"garbage", []byte("hello"), "truncated"},
		{"swapped order", bytes.Replace(state, []byte("CERTIFICATE"), []byte("EC PRIVATE KEY"), 2), "want"},
		{"bad DER", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "block 0"},
		{"key mismatch", append(append([]byte{}, otherBlocks[0]...), bytes.Join(blocks[1:], nil)...), "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, StateFile), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want error containing %q", err, tt.msg)
			}
		})
	}
	if _, err := ParseRootPEM([]byte("nothing")); err == nil {
		t.Error("ParseRootPEM of garbage: got nil error, want one")
	}
	if _, err := ParseRootPEM([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("ParseRootPEM of bad DER: got nil error, want one")
	}
	if _, err := LoadOrCreate("/proc/nonexistent/ca", Options{}); err == nil {
		t.Error("unwritable dir: got nil error, want one")
	}
}

func TestSeededRand(t *testing.T) {
	a, b := make([]byte, 32), make([]byte, 32)
	SeededRand("s").Read(a)
	SeededRand("s").Read(b)
	if !bytes.Equal(a, b) {
		t.Errorf("got %x, want %x", b, a)
	}
	a1, _ := New(testOpts("k"))
	a2, _ := New(testOpts("k"))
	if !a1.Root.Equal(a2.Root) {
		t.Error("same seed: got different roots, want identical")
	}
}

func TestIssueServer(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueServer([]string{"kms.us-east-1.amazonaws.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.Root)
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		ic, _ := x509.ParseCertificate(der)
		inter.AddCert(ic)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "kms.us-east-1.amazonaws.com", Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("server certificate does not verify for TLS: %v", err)
	}
	if _, err := c.IssueServer(nil, nil); err == nil {
		t.Fatal("IssueServer accepted no DNS name")
	}
}

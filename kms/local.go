package kms

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/nitrovm/nitrovm/ca"
)

// LocalConfig configures StartLocal: a KMS trusting nitrovm's local CA.
type LocalConfig struct {
	// Dir is the KMS state directory; CADir the CA's (created on first use).
	Dir, CADir string
	// Region names the service (default DefaultRegion).
	Region string
	// ExtraRoots are PEM files' contents whose certificates are trusted
	// besides the local CA's root (for example AWS's Nitro Enclaves root).
	ExtraRoots [][]byte
	// Credentials, if non-nil, turns on SigV4 verification.
	Credentials map[string]string
	// HTTPAddr and TLSAddr are listen addresses ("" = none; at least one).
	HTTPAddr, TLSAddr string
	// Logger gets one line per request; nil logs nothing.
	Logger *slog.Logger
}

// Local is a running local KMS.
type Local struct {
	*Server
	Service *Service
	// Endpoints describes where it listens.
	Endpoints Endpoints
}

// Endpoints is what "kms serve" prints on start.
type Endpoints struct {
	Region        string
	StateDir      string
	HTTPEndpoint  string `json:",omitempty"` // http://ADDR
	TLSEndpoint   string `json:",omitempty"` // https://ADDR
	TLSServerName string `json:",omitempty"` // name in the TLS certificate
	CARoot        string // PEM file of the root the TLS certificate chains to
	VerifySigV4   bool
}

// OpenLocal opens the key store of cfg.Dir as a Service trusting the local
// CA's root and cfg.ExtraRoots for attestation documents, without listening
// ("kms call"); the listen fields of cfg are ignored.
func OpenLocal(cfg LocalConfig) (*Service, error) {
	svc, _, err := openLocal(cfg)
	return svc, err
}

// openLocal is OpenLocal, also returning the local CA.
func openLocal(cfg LocalConfig) (*Service, *ca.CA, error) {
	c, err := ca.LoadOrCreate(cfg.CADir, ca.Options{})
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.Root)
	for i, data := range cfg.ExtraRoots {
		n := 0
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("kms: attestation root %d: %w", i+1, err)
			}
			roots.AddCert(cert)
			n++
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("kms: attestation root %d: no PEM certificate", i+1)
		}
	}
	svc, err := New(Options{Dir: cfg.Dir, Region: cfg.region(), Roots: roots})
	if err != nil {
		return nil, nil, err
	}
	return svc, c, nil
}

// region is cfg.Region or DefaultRegion.
func (cfg LocalConfig) region() string {
	if cfg.Region == "" {
		return DefaultRegion
	}
	return cfg.Region
}

// StartLocal opens the key store, loads the local CA, issues the TLS
// certificate for kms.<region>.amazonaws.com (and localhost, 127.0.0.1)
// and opens the listeners. Serve the returned Local to answer requests.
func StartLocal(cfg LocalConfig) (*Local, error) {
	region := cfg.region()
	svc, c, err := openLocal(cfg)
	if err != nil {
		return nil, err
	}
	lc := ListenConfig{HTTPAddr: cfg.HTTPAddr, TLSAddr: cfg.TLSAddr}
	if cfg.TLSAddr != "" {
		cert, err := c.IssueServer([]string{ServerName(region), "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
		if err != nil {
			return nil, err
		}
		lc.TLSCert = &cert
	}
	srv, err := Listen(lc, Handler(svc, HandlerOptions{Credentials: cfg.Credentials, Logger: cfg.Logger}))
	if err != nil {
		return nil, err
	}
	l := &Local{Server: srv, Service: svc, Endpoints: Endpoints{
		Region: region, StateDir: cfg.Dir, CARoot: filepath.Join(cfg.CADir, ca.RootFile),
		VerifySigV4: cfg.Credentials != nil,
	}}
	if a := srv.HTTPAddr(); a != "" {
		l.Endpoints.HTTPEndpoint = "http://" + a
	}
	if a := srv.TLSAddr(); a != "" {
		l.Endpoints.TLSEndpoint = "https://" + a
		l.Endpoints.TLSServerName = ServerName(region)
	}
	return l, nil
}

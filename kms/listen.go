package kms

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ServerName returns the host name AWS's SDKs use for KMS in region, the
// name the TLS listener's certificate carries.
func ServerName(region string) string { return "kms." + region + ".amazonaws.com" }

// ListenConfig says where a Server listens.
type ListenConfig struct {
	// HTTPAddr is the plain-HTTP listen address ("" = none).
	HTTPAddr string
	// TLSAddr is the TLS listen address ("" = none); TLSCert is then
	// required.
	TLSAddr string
	TLSCert *tls.Certificate
}

// Server is a Handler bound to its listeners.
type Server struct {
	httpLn, tlsLn net.Listener
	srv           *http.Server
}

// readHeaderTimeout bounds how long a client may take to send headers.
const readHeaderTimeout = 30 * time.Second

// Listen opens the listeners of cfg for h.
func Listen(cfg ListenConfig, h http.Handler) (*Server, error) {
	if cfg.HTTPAddr == "" && cfg.TLSAddr == "" {
		return nil, errors.New("kms: no listen address")
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout}}
	var err error
	if cfg.HTTPAddr != "" {
		if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("kms: listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	if cfg.TLSAddr != "" {
		if cfg.TLSCert == nil {
			s.Close()
			return nil, errors.New("kms: TLS listener without a certificate")
		}
		ln, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("kms: listen %s: %w", cfg.TLSAddr, err)
		}
		s.tlsLn = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cfg.TLSCert}, MinVersion: tls.VersionTLS12})
	}
	return s, nil
}

// HTTPAddr returns the plain-HTTP listener's address, or "".
func (s *Server) HTTPAddr() string { return addrString(s.httpLn) }

// TLSAddr returns the TLS listener's address, or "".
func (s *Server) TLSAddr() string { return addrString(s.tlsLn) }

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Serve serves until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	for _, ln := range []net.Listener{s.httpLn, s.tlsLn} {
		if ln != nil {
			go func() { errc <- s.srv.Serve(ln) }()
		}
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.srv.Shutdown(sctx)
	case err := <-errc:
		s.srv.Close()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("kms: serve: %w", err)
	}
}

// Close closes the listeners.
func (s *Server) Close() error {
	for _, ln := range []net.Listener{s.httpLn, s.tlsLn} {
		if ln != nil {
			ln.Close()
		}
	}
	return s.srv.Close()
}

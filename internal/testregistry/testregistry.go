// Package testregistry runs an OCI registry on loopback for tests and
// demos: go-containerregistry's in-memory pkg/registry behind an optional
// token server (the Docker registry token flow: a 401 with a Bearer
// challenge, a token fetched with basic credentials from the realm, then
// "Authorization: Bearer" on every request), plus a hook to inject faults.
package testregistry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Options configures a Server.
type Options struct {
	// User and Password, when User is set, are the only credentials the
	// token server accepts; every /v2/ request then needs a token.
	User, Password string
	// Intercept, if not nil, sees every request first; returning true
	// means it answered the request itself (to inject faults).
	Intercept func(w http.ResponseWriter, r *http.Request) bool
	// Log receives the registry's request log; nil discards it.
	Log io.Writer
}

// Server is a running loopback registry.
type Server struct {
	// Addr is "127.0.0.1:port", the registry part of image references.
	Addr  string
	srv   *http.Server
	ln    net.Listener
	token string
	o     Options
	reg   http.Handler
}

// tokenPath is where the token server answers.
const tokenPath = "/token"

// Start listens on addr ("127.0.0.1:0" for any free port) and serves.
func Start(addr string, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		ln.Close()
		return nil, err
	}
	lw := o.Log
	if lw == nil {
		lw = io.Discard
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln, token: hex.EncodeToString(tok[:]), o: o,
		reg: registry.New(registry.Logger(log.New(lw, "", log.LstdFlags)))}
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.o.Intercept != nil && s.o.Intercept(w, r) {
		return
	}
	if s.o.User == "" {
		s.reg.ServeHTTP(w, r)
		return
	}
	if r.URL.Path == tokenPath {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.o.User || p != s.o.Password {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"token": s.token})
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v2") && r.Header.Get("Authorization") != "Bearer "+s.token {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s%s",service="testregistry"`, s.Addr, tokenPath))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	s.reg.ServeHTTP(w, r)
}

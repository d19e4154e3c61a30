package kms

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// MaxRequestBytes bounds a request body: a 262144-byte attestation document
// is 349528 bytes of base64, plus the rest of the request.
const MaxRequestBytes = 1 << 20

// targetPrefix opens X-Amz-Target for KMS (the service's JSON protocol
// target prefix).
const targetPrefix = "TrentService."

// contentType is AWS JSON protocol 1.1's media type.
const contentType = "application/x-amz-json-1.1"

// HandlerOptions configure Handler.
type HandlerOptions struct {
	// Credentials, if non-nil, maps access key IDs to secret keys; every
	// request must then carry a valid SigV4 signature by one of them.
	// Nil accepts any (or no) signature.
	Credentials map[string]string
	// Logger gets one line per request; nil logs nothing.
	Logger *slog.Logger
	// Now is the clock for signature freshness; nil is time.Now.
	Now func() time.Time
}

// Handler serves s over AWS's JSON protocol.
func Handler(s *Service, opts HandlerOptions) http.Handler {
	return &server{svc: s, opts: opts}
}

type server struct {
	svc  *Service
	opts HandlerOptions
}

// ServeHTTP implements http.Handler.
func (h *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	out, err := h.serve(r, op)
	status := http.StatusOK
	var body []byte
	if err == nil {
		body, err = json.Marshal(out)
	}
	if err != nil {
		var ke *Error
		if !errors.As(err, &ke) {
			ke = errorf(ErrInternal, "%v", err)
		}
		status = http.StatusBadRequest
		if ke.Type == ErrInternal {
			status = http.StatusInternalServerError
		}
		body, _ = json.Marshal(struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}{ke.Type, ke.Message})
		err = ke
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-RequestId", requestID(start))
	w.WriteHeader(status)
	w.Write(body)
	if h.opts.Logger != nil {
		attrs := []any{"op", op, "status", status, "remote", r.RemoteAddr, "duration", time.Since(start).Round(time.Microsecond)}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		}
		h.opts.Logger.Info("kms request", attrs...)
	}
}

func (h *server) serve(r *http.Request, op string) (any, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, errorf(ErrUnknownOperation, "%s %s: KMS accepts only POST /", r.Method, r.URL.Path)
	}
	if !strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix) {
		return nil, errorf(ErrUnknownOperation, "X-Amz-Target %q does not name a TrentService operation", r.Header.Get("X-Amz-Target"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return nil, errorf(ErrSerialization, "read request body: %v", err)
	}
	if len(body) > MaxRequestBytes {
		return nil, errorf(ErrValidation, "request body exceeds %d bytes", MaxRequestBytes)
	}
	if h.opts.Credentials != nil {
		now := time.Now()
		if h.opts.Now != nil {
			now = h.opts.Now()
		}
		if err := verifySigV4(r, body, h.opts.Credentials, now); err != nil {
			return nil, err
		}
	}
	return h.svc.Do(op, body)
}

// requestID returns a request ID for the response header.
func requestID(t time.Time) string {
	return fmt.Sprintf("nitrovm-%x", t.UnixNano())
}

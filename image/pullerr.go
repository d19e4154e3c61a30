package image

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrorKind is the cause of a failed pull.
type ErrorKind int

// Causes of a failed pull.
const (
	KindOther          ErrorKind = iota // anything else
	KindBadReference                    // the reference or platform does not parse
	KindNotFound                        // no such repository, tag or digest
	KindUnauthorized                    // credentials missing or refused
	KindPlatform                        // no image for the platform
	KindDigestMismatch                  // served bytes do not match their digest
	KindUnreachable                     // no connection to the registry
	KindInterrupted                     // the connection broke during a download
	KindDiskFull                        // the cache's disk is full
	KindInsecure                        // plain HTTP to a non-loopback registry
	KindLocal                           // a local image store (docker, podman) failed
)

// PullError is a failed pull: the image as the user named it, the cause,
// and the registry (or local store) involved. Its message is one line.
type PullError struct {
	Image    string
	Kind     ErrorKind
	Registry string
	Err      error
}

// Unwrap returns the underlying error.
func (e *PullError) Unwrap() error { return e.Err }

func (e *PullError) Error() string {
	at := ""
	if e.Registry != "" {
		at = " at " + e.Registry
	}
	var cause string
	switch e.Kind {
	case KindBadReference:
		cause = fmt.Sprintf("invalid reference: %v", e.Err)
	case KindNotFound:
		if errors.Is(e.Err, errNotLocal) {
			cause = e.Err.Error()
		} else {
			cause = fmt.Sprintf("not found%s: %s", at, registryMessage(e.Err))
		}
	case KindUnauthorized:
		cause = fmt.Sprintf("unauthorized%s (log in with 'docker login', or check ~/.docker/config.json or $DOCKER_CONFIG; a repository that does not exist can also answer this): %s", at, registryMessage(e.Err))
	case KindPlatform:
		cause = e.Err.Error()
	case KindDigestMismatch:
		cause = fmt.Sprintf("digest mismatch%s: %v; nothing was cached", at, e.Err)
	case KindUnreachable:
		cause = fmt.Sprintf("registry %s unreachable: %v", e.Registry, rootCause(e.Err))
	case KindInterrupted:
		cause = fmt.Sprintf("download from %s interrupted: %v; nothing was cached", e.Registry, e.Err)
	case KindDiskFull:
		cause = fmt.Sprintf("disk full while writing the image cache: %v", rootCause(e.Err))
	case KindInsecure:
		cause = fmt.Sprintf("refused: %v", rootCause(e.Err))
	case KindLocal:
		cause = fmt.Sprintf("%s: %v", e.Registry, e.Err)
	default:
		cause = fmt.Sprintf("pull%s: %v", at, e.Err)
	}
	return fmt.Sprintf("image %s: %s", e.Image, cause)
}

// PlatformError says that an image has no variant for the platform.
type PlatformError struct {
	Want string
	Have []string
}

func (e *PlatformError) Error() string {
	if len(e.Have) == 0 {
		return fmt.Sprintf("no %s image (the index lists no platforms); choose one with --platform", e.Want)
	}
	return fmt.Sprintf("no %s image (it has %s); choose one with --platform", e.Want, strings.Join(e.Have, ", "))
}

// LayerError is a failed layer download.
type LayerError struct {
	Digest    v1.Hash
	Got, Size int64
	Err       error
}

// Unwrap returns the underlying error.
func (e *LayerError) Unwrap() error { return e.Err }

func (e *LayerError) Error() string {
	var mm *DigestMismatchError
	if errors.As(e.Err, &mm) {
		return fmt.Sprintf("layer %v", mm)
	}
	return fmt.Sprintf("layer %s after %d of %d bytes: %v", e.Digest, e.Got, e.Size, rootCause(e.Err))
}

// classify finds the cause of a pull error.
func classify(err error) ErrorKind {
	var (
		mm  *DigestMismatchError
		te  *transport.Error
		ie  *insecureError
		ne  net.Error
		oe  *net.OpError
		dne *net.DNSError
	)
	switch {
	case errors.As(err, &mm):
		return KindDigestMismatch
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return KindDiskFull
	case errors.As(err, &ie):
		return KindInsecure
	case errors.As(err, &te):
		switch {
		case te.StatusCode == http.StatusUnauthorized, te.StatusCode == http.StatusForbidden:
			return KindUnauthorized
		case te.StatusCode == http.StatusNotFound:
			return KindNotFound
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return KindUnauthorized
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return KindNotFound
			}
		}
		return KindOther
	case errors.As(err, &dne), errors.As(err, &oe) && oe.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return KindUnreachable
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return KindInterrupted
	case errors.As(err, &ne) && ne.Timeout():
		return KindUnreachable
	}
	if strings.Contains(err.Error(), "checksum") && strings.Contains(err.Error(), "verifying") {
		// go-containerregistry's verify.ReadCloser, which has no error type.
		return KindDigestMismatch
	}
	return KindOther
}

// registryMessage is the registry's own error text when it gave one.
func registryMessage(err error) string {
	var te *transport.Error
	if errors.As(err, &te) && len(te.Errors) > 0 {
		var parts []string
		for _, d := range te.Errors {
			parts = append(parts, fmt.Sprintf("%s: %s", d.Code, d.Message))
		}
		return strings.Join(parts, "; ")
	}
	if errors.As(err, &te) {
		return fmt.Sprintf("HTTP %d %s", te.StatusCode, http.StatusText(te.StatusCode))
	}
	return rootCause(err).Error()
}

// rootCause strips URL and op wrappers down to the informative error,
// keeping "dial tcp 127.0.0.1:1: connect: connection refused".
func rootCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	var dne *net.DNSError
	if errors.As(err, &dne) {
		return dne
	}
	return err
}

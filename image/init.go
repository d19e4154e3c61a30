package image

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
)

// initFS holds initbin/init, nitrovm's enclave init (./guest/init), when the
// build put it there first (make build does); it is read-only.
//
//go:embed all:initbin
var initFS embed.FS

// ErrNoDefaultInit is returned by [DefaultInit] when this binary was built
// without the enclave init embedded.
var ErrNoDefaultInit = errors.New("image: this nitrovm was built without the enclave init (build with `make build`, or pass --init PATH or --blobs DIR)")

// DefaultInit returns nitrovm's enclave /init, a static Go binary built from
// ./guest/init and embedded at build time.
func DefaultInit() ([]byte, error) {
	b, err := initFS.ReadFile("initbin/" + InitFile)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(b) == 0) {
		return nil, ErrNoDefaultInit
	}
	if err != nil {
		return nil, fmt.Errorf("image: read embedded init: %w", err)
	}
	return b, nil
}

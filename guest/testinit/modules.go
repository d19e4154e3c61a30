package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nitrovm/nitrovm/internal/kmod"
)

// modulesList names the kernel modules testinit loads before its checks,
// one ramdisk path per line, dependencies first. Ramdisks for stock
// distribution kernels (Debian's cloud kernel builds virtio-mmio and vsock
// as modules) carry it; the enclave kernel needs none.
const modulesList = "/modules.list"

// loadModules loads the modules named in list, if it exists, and reports
//
//	NITROVM-TEST modules=virtio_mmio.ko.xz,vsock.ko.xz,...
//
// It returns the first error; a missing list is no modules.
func loadModules(r *report, list string) error {
	b, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", list, err)
	}
	var loaded []string
	for _, p := range strings.Fields(string(b)) {
		if err := kmod.Load(p); err != nil {
			return err
		}
		loaded = append(loaded, p[strings.LastIndex(p, "/")+1:])
	}
	r.kv("modules", "%s", strings.Join(loaded, ","))
	return nil
}

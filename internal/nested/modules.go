package nested

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// DefaultModules returns the modules init loads in L1 unless Options says
// otherwise, by name: KVM for AMD SVM (what QEMU's TCG "-cpu max" emulates),
// vsock with its loopback transport (AF_VSOCK between L1 processes) and
// vhost-vsock. Their dependencies are added from modules.dep.
func DefaultModules() []string { return []string{"kvm_amd", "vsock_loopback", "vhost_vsock"} }

// moduleOrder returns the files (relative to dir) of mods and their
// dependencies, dependencies first, as listed by dir/modules.dep.
func moduleOrder(dir string, mods []string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{} // file -> dependency files
	byName := map[string]string{} // module name -> file
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		file, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
		byName[moduleName(file)] = file
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	var order []string
	seen := map[string]bool{}
	var visit func(file string, depth int) error
	visit = func(file string, depth int) error {
		if seen[file] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("module dependency loop at %s", file)
		}
		for _, d := range deps[file] {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		seen[file] = true
		order = append(order, file)
		return nil
	}
	for _, m := range mods {
		file, ok := byName[moduleName(m)]
		if !ok {
			return nil, fmt.Errorf("module %s not in %s", m, filepath.Join(dir, "modules.dep"))
		}
		if err := visit(file, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleName turns "kernel/arch/x86/kvm/kvm-amd.ko.xz" or "kvm-amd" into
// "kvm_amd".
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

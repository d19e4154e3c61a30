package vmm

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

// ExitStats is KVM's own accounting of a VM's run (the binary statistics
// of KVM_GET_STATS_FD), read when the VM stops.
type ExitStats struct {
	// Exits counts VM exits by reason, summed over the vCPUs: "exits" is
	// every exit, the others are KVM's per-reason counters ("io_exits",
	// "mmio_exits", "halt_exits", "irq_window_exits", ...).
	Exits map[string]uint64 `json:"exits"`
	// VCPU is every single-valued vCPU statistic, summed over the vCPUs.
	VCPU map[string]uint64 `json:"vcpu"`
	// VM is every single-valued VM-wide statistic.
	VM map[string]uint64 `json:"vm"`
}

// isExitStat reports whether a vCPU statistic counts exits: "exits" and
// the "*_exits" counters, plus the ones KVM names otherwise but that are
// exits by reason (instruction emulation, hypercalls).
func isExitStat(name string) bool {
	return name == "exits" || strings.HasSuffix(name, "_exits") || name == "insn_emulation" || name == "hypercalls"
}

// readExitStats reads the VM's and every vCPU's statistics. It returns
// nil and no error where the kernel lacks the binary stats interface.
func readExitStats(vm *kvm.VM, vcpus []*kvm.VCPU) (*ExitStats, error) {
	s := &ExitStats{Exits: map[string]uint64{}, VCPU: map[string]uint64{}, VM: map[string]uint64{}}
	read := func(open func() (*kvm.Stats, error), into map[string]uint64) error {
		st, err := open()
		if err != nil {
			return err
		}
		defer st.Close()
		m, err := st.Read()
		if err != nil {
			return err
		}
		for k, v := range m {
			into[k] += v
		}
		return nil
	}
	if err := read(vm.Stats, s.VM); err != nil {
		if errors.Is(err, kvm.ErrNoStats) {
			return nil, nil
		}
		return nil, err
	}
	for _, c := range vcpus {
		if err := read(c.Stats, s.VCPU); err != nil {
			return nil, err
		}
	}
	for k, v := range s.VCPU {
		if isExitStat(k) {
			s.Exits[k] = v
		}
	}
	return s, nil
}

// logAttrs returns the exit counters as log attributes, non-zero ones
// only, in name order.
func (s *ExitStats) logAttrs() []any {
	names := make([]string, 0, len(s.Exits))
	for k, v := range s.Exits {
		if v != 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	attrs := make([]any, 0, len(names))
	for _, k := range names {
		attrs = append(attrs, slog.Uint64(k, s.Exits[k]))
	}
	return attrs
}

// Stats returns KVM's statistics of the run, read when Run returned; nil
// before that, or when the kernel has no binary stats (Linux < 5.14).
func (v *VM) Stats() *ExitStats { return v.stats }

// collectStats reads the statistics once the vCPUs have stopped and logs
// the exit counts.
func (v *VM) collectStats() {
	cs := make([]*kvm.VCPU, len(v.vcpus))
	for i, c := range v.vcpus {
		cs[i] = c.c
	}
	s, err := readExitStats(v.vm, cs)
	if err != nil {
		v.logger.Warn("kvm statistics unavailable", "err", fmt.Errorf("vmm: %w", err))
		return
	}
	if s == nil {
		v.logger.Debug("kvm binary statistics not supported by this kernel")
		return
	}
	v.stats = s
	v.logger.Info("vm exits", s.logAttrs()...)
}

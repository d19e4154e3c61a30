package vmm

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckVCPUCPUs reports whether Build would accept cpus as
// Config.VCPUCPUs in the calling process, for front ends that check a
// user's list before they start a VM.
func CheckVCPUCPUs(cpus []int) error {
	_, err := vcpuAffinity(cpus)
	return err
}

// vcpuAffinity returns cpus as a CPU set for the vCPU threads. It fails
// when a number is outside what a CPU set holds, or when none of cpus is
// among the CPUs the calling thread may run on (sched_setaffinity(2)
// would refuse such a set, or the cpuset cgroup would leave it empty).
func vcpuAffinity(cpus []int) (unix.CPUSet, error) {
	var set, allowed unix.CPUSet
	for _, c := range cpus {
		if c < 0 || c >= len(set)*64 {
			return set, fmt.Errorf("vCPU CPU %d out of range 0..%d", c, len(set)*64-1)
		}
		set.Set(c)
	}
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return set, fmt.Errorf("sched_getaffinity: %w", err)
	}
	both := set
	for i := range both {
		both[i] &= allowed[i]
	}
	if both.Count() == 0 {
		return set, fmt.Errorf("vCPU CPUs %s: none of them is among the CPUs this process may run on (%s)", CPUList(set), CPUList(allowed))
	}
	return set, nil
}

// pinThread confines the calling thread, which must be locked to its
// goroutine, to set.
func pinThread(set *unix.CPUSet) error {
	if err := unix.SchedSetaffinity(0, set); err != nil {
		return fmt.Errorf("sched_setaffinity(%s): %w", CPUList(*set), err)
	}
	return nil
}

// CPUList formats set in the kernel's list syntax ("0-2,5"), the syntax of
// NITROVM_VCPU_CPUS; "none" for an empty set.
func CPUList(set unix.CPUSet) string {
	var parts []string
	n := len(set) * 64
	for c := 0; c < n; c++ {
		if !set.IsSet(c) {
			continue
		}
		end := c
		for end+1 < n && set.IsSet(end+1) {
			end++
		}
		if end == c {
			parts = append(parts, strconv.Itoa(c))
		} else {
			parts = append(parts, strconv.Itoa(c)+"-"+strconv.Itoa(end))
		}
		c = end
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

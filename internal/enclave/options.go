package enclave

import (
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nitrovm/nitrovm/internal/vmm"
)

// Nitro constraints and nitrovm defaults.
const (
	// MinMemoryMiB is the smallest enclave memory accepted, in MiB.
	MinMemoryMiB = 64
	// MemoryGranularityMiB is the unit memory is allocated in (one 2 MiB
	// huge page); requests are rounded up to it, as nitro-cli's allocator
	// rounds up to whole huge pages.
	MemoryGranularityMiB = 2
	// MemoryEIFSizeRatio is how many times the EIF size the memory must be
	// at least (nitro-cli ENCLAVE_MEMORY_EIF_SIZE_RATIO).
	MemoryEIFSizeRatio = 4
	// DefaultHeartbeatTimeout is how long run-enclave waits for the
	// enclave's heartbeat, nitro-cli's lower bound.
	DefaultHeartbeatTimeout = 180 * time.Second
	// DefaultParentID is the parent instance ID used when none is given,
	// as nitro-cli does without a board asset tag.
	DefaultParentID = "i-0000000000000000"
	// FirstAutoCID is the lowest CID assigned when the CID is left to
	// nitrovm.
	FirstAutoCID = 16
	// ParentCID is the parent instance's vsock CID.
	ParentCID = 3
	// DefaultCPUPoolSize is the number of CPU IDs (1..N) in the emulated
	// Nitro Enclaves CPU pool when NITROVM_CPU_POOL is not set.
	DefaultCPUPoolSize = 64
	// CPUPoolEnv names the environment variable that sets the CPU pool in
	// nitro-cli's allocator syntax, e.g. "1-3,6".
	CPUPoolEnv = "NITROVM_CPU_POOL"
	// VCPUCPUsEnv names the environment variable that keeps the vCPU
	// threads of every VM nitrovm boots on these host CPUs, in the same
	// syntax ("1-2"); the VMM's other threads (devices, vsock, NSM) may
	// run anywhere. Unset, vCPU threads run wherever the process may.
	// "nitrovm nested --only-vcpus-off-cpu0" sets it to keep guests off
	// L1's CPU 0 (package nested).
	VCPUCPUsEnv = "NITROVM_VCPU_CPUS"
)

// VCPUCPUs returns the host CPUs VCPUCPUsEnv names in getenv's
// environment, or nil when it is unset or empty. It fails when the list
// is malformed, or when vmm.Build would refuse it (a CPU beyond what a
// CPU set holds, or none the calling process may use).
func VCPUCPUs(getenv func(string) string) ([]int, error) {
	s := getenv(VCPUCPUsEnv)
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	ids, err := ParseCPUPool(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", VCPUCPUsEnv, err)
	}
	cpus := make([]int, len(ids))
	for i, id := range ids {
		cpus[i] = int(id)
	}
	if err := vmm.CheckVCPUCPUs(cpus); err != nil {
		return nil, fmt.Errorf("%s: %w", VCPUCPUsEnv, err)
	}
	return cpus, nil
}

// RunOptions is a run-enclave request.
type RunOptions struct {
	EIFPath   string
	MemoryMiB uint64   // requested memory in MiB
	CPUCount  int      // number of CPUs; exclusive with CPUIDs
	CPUIDs    []uint32 // explicit CPU IDs from the pool
	CID       uint64   // 0 picks one
	Name      string   // "" means the EIF's base name without ".eif"
	Debug     bool

	ParentID         string // "" means DefaultParentID
	ParentRoleARN    string
	VsockUDS         string // "" means <enclave dir>/vsock.sock
	Forwards         []string
	Publishes        []string
	AFVsock          bool
	HeartbeatTimeout time.Duration // 0 means DefaultHeartbeatTimeout
	// KMS starts a local KMS in the supervisor, reachable from the
	// enclave on vsock port KMSVsockPort (TLS).
	KMS bool
	// Jail configures the supervisor's containment.
	Jail Jail
}

// Jail configures how a supervisor contains itself once its VM is built
// (internal/jail, docs/security.md).
type Jail struct {
	// SeccompAction is what the seccomp filter does with a syscall
	// outside the allowlist: "kill" (also ""), "errno", "log" or "off".
	SeccompAction string `json:",omitempty"`
	// User and Group are the identity a supervisor started as root drops
	// to (names or numbers; "" means nobody and its group).
	User  string `json:",omitempty"`
	Group string `json:",omitempty"`
	// Cgroup is a cgroup v2 directory (absolute or under /sys/fs/cgroup)
	// the supervisor moves into; "" means none.
	Cgroup string `json:",omitempty"`
}

// KMSVsockPort is the parent vsock port an enclave reaches KMS on:
// vsock-proxy's and kmstool-enclave-cli's default --proxy-port.
const KMSVsockPort = 8000

// ParseMemory parses a memory size as nitro-cli does: a number of MiB with
// an optional unit M, G or T (either case).
func ParseMemory(s string) (uint64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, newErr(KindInvalidArgument, "Invalid argument provided. The parameter `memory` does not contain a number (`%s`)", s)
	}
	var mul uint64
	switch unit {
	case "", "M", "m":
		mul = 1
	case "G", "g":
		mul = 1 << 10
	case "T", "t":
		mul = 1 << 20
	default:
		return 0, newErr(KindInvalidArgument, "Invalid argument provided. The parameter `memory` does not contain a valid size indicator (`%s`)", s)
	}
	if n > math.MaxUint64/mul {
		return 0, newErr(KindInvalidArgument, "Invalid argument provided. The parameter `memory` is too large (`%s`)", s)
	}
	return n * mul, nil
}

// ParseCPUPool parses a CPU list in nitro-cli's allocator syntax
// ("1-3,6"), returning the sorted, de-duplicated IDs.
func ParseCPUPool(s string) ([]uint32, error) {
	seen := map[uint32]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid CPU list entry %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a || b-a > 4096 {
				return nil, fmt.Errorf("invalid CPU list interval %q", part)
			}
		}
		for c := a; c <= b; c++ {
			seen[uint32(c)] = true
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("empty CPU list %q", s)
	}
	ids := make([]uint32, 0, len(seen))
	for c := range seen {
		ids = append(ids, c)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// DefaultCPUPool returns the CPU pool IDs 1..DefaultCPUPoolSize. CPU 0
// stays with the parent, as on Nitro.
func DefaultCPUPool() []uint32 {
	ids := make([]uint32, DefaultCPUPoolSize)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	return ids
}

// HostArch returns the host architecture in EIF terms ("x86_64" or
// "aarch64").
func HostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// checkCID validates an explicit CID the way nitro-cli does.
func checkCID(cid uint64) error {
	switch {
	case cid == 0:
		return nil
	case cid <= 2 || cid == math.MaxUint32:
		return newErr(KindInvalidArgument, "Invalid argument provided. CID %d is a well-known CID, not to be used for enclaves", cid)
	case cid == ParentCID:
		return newErr(KindInvalidArgument, "Invalid argument provided. CID %d is the CID of the parent VM, not to be used for enclaves", cid)
	case cid > math.MaxUint32:
		return newErr(KindInvalidArgument, "Invalid argument provided. CID %d is higher than the maximum supported (u32 max) for a vsock device", cid)
	}
	return nil
}

// checkOptions validates what can be checked without the EIF or the state
// directory.
func checkOptions(o *RunOptions) error {
	if err := checkJail(o.Jail); err != nil {
		return err
	}
	if o.EIFPath == "" {
		return newErr(KindMissingArgument, "Missing mandatory argument. User did not provide the `eif-path` argument.")
	}
	if o.CPUCount == 0 && len(o.CPUIDs) == 0 {
		return newErr(KindMissingArgument, "Missing mandatory argument. User did not provide the `cpu-count` or `cpu-ids` argument.")
	}
	if o.CPUCount != 0 && len(o.CPUIDs) != 0 {
		return newErr(KindConflictingArgument, "Conflicting arguments. User provided both `cpu-count` and `cpu-ids`.")
	}
	if o.CPUCount < 0 {
		return newErr(KindInvalidArgument, "Invalid argument provided. The parameter `cpu-count` is not a valid integer (`%d`)", o.CPUCount)
	}
	if len(o.CPUIDs) > 0 {
		seen := map[uint32]bool{}
		var dup []string
		for _, c := range o.CPUIDs {
			if seen[c] {
				dup = append(dup, strconv.FormatUint(uint64(c), 10))
			}
			seen[c] = true
		}
		if len(dup) > 0 {
			return newErr(KindInvalidCPUConfig, "Invalid CPU configuration. User provided `cpu-ids` contains same CPU(s) (CPU(s) %s) multiple times.", strings.Join(dup, ", "))
		}
	}
	if o.MemoryMiB == 0 {
		return newErr(KindInsufficientMemory, "Insufficient memory requested. User provided `memory` is 0 MB, and memory should be greater than 0 MB.")
	}
	if o.MemoryMiB < MinMemoryMiB {
		return newErr(KindInsufficientMemory, "Insufficient memory requested. User provided `memory` is %d MB, but the minimum memory for an enclave is %d MB", o.MemoryMiB, MinMemoryMiB)
	}
	if err := checkCID(o.CID); err != nil {
		return err
	}
	if o.HeartbeatTimeout < 0 {
		return newErr(KindInvalidArgument, "Invalid argument provided. The parameter `heartbeat-timeout` must not be negative (`%s`)", o.HeartbeatTimeout)
	}
	if o.Name != "" && (strings.ContainsAny(o.Name, "/\x00\n") || o.Name == "." || o.Name == "..") {
		return newErr(KindNaming, "Naming error. The enclave name %q is not valid.", o.Name)
	}
	return nil
}

// checkMemory checks the memory against the EIF size and rounds it up to
// the allocation granularity.
func checkMemory(mib uint64, eifSize int64) (uint64, error) {
	const mibBytes = 1 << 20
	minMiB := (uint64(eifSize) + mibBytes - 1) / mibBytes * MemoryEIFSizeRatio
	if mib*mibBytes < uint64(eifSize)*MemoryEIFSizeRatio {
		return 0, newErr(KindInsufficientMemory, "Insufficient memory requested. User provided `memory` is %d MB, but based on the EIF file size, the minimum memory should be %d MB", mib, minMiB)
	}
	return (mib + MemoryGranularityMiB - 1) / MemoryGranularityMiB * MemoryGranularityMiB, nil
}

// defaultName returns nitro-cli's default enclave name for an EIF path: its
// base name without a trailing ".eif".
func defaultName(eifPath string) string {
	return strings.TrimSuffix(filepath.Base(eifPath), ".eif")
}

// uniqueName returns name, or name_1, name_2... whichever is not taken.
func uniqueName(name string, taken map[string]bool) string {
	n := name
	for i := 1; taken[n]; i++ {
		n = fmt.Sprintf("%s_%d", name, i)
	}
	return n
}

// formatCPUIDs formats CPU IDs as nitro-cli's "cpu-ids: [1, 3]".
func formatCPUIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, c := range ids {
		s[i] = strconv.FormatUint(uint64(c), 10)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

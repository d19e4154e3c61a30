package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/internal/cli/jsonout"
	"github.com/nitrovm/nitrovm/internal/enclave"
	"github.com/nitrovm/nitrovm/internal/vsockhost"
)

// eSocket is nitro-cli's E11 SocketError, which it reports for an unknown
// enclave ID.
const eSocket = 11

// runFlags are run-enclave's flags.
type runFlags struct {
	eifPath, cpuCount, memory, cid, name, config string
	cpuIDs                                       []string
	debug, attach                                bool

	vsockUDS, parentRole, parentID, heartbeat string
	forwards, publishes                       []string
	afVsock                                   bool
	kms                                       bool
	kmsEndpoint                               string

	seccompAction, uid, gid, cgroup string
}

// runConfig is nitro-cli's --config JSON (RunEnclavesArgs).
type runConfig struct {
	EIFPath       string   `json:"eif_path"`
	EnclaveCID    *uint64  `json:"enclave_cid"`
	MemoryMiB     uint64   `json:"memory_mib"`
	CPUIDs        []uint32 `json:"cpu_ids"`
	DebugMode     bool     `json:"debug_mode"`
	AttachConsole bool     `json:"attach_console"`
	CPUCount      *int     `json:"cpu_count"`
	EnclaveName   string   `json:"enclave_name"`
}

// newRunEnclaveCmd returns the "run-enclave" subcommand.
func newRunEnclaveCmd(env Env) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run-enclave --eif-path FILE --memory MiB (--cpu-count N | --cpu-ids ID...) [flags]",
		Short: "Start an enclave from an EIF (nitro-cli run-enclave)",
		Long: `Start an enclave from an EIF, detached and supervised by its own nitrovm
process, and print its description once its heartbeat arrived.

Memory accepts N, NM, NG or NT (MiB, GiB, TiB). CPU IDs come from the
emulated pool (NITROVM_CPU_POOL, default 1-64). The state directory is
$NITROVM_STATE_DIR, else $XDG_RUNTIME_DIR/nitrovm, else /run/nitrovm (root)
or /tmp/nitrovm-UID.`,
		// Extra arguments are further CPU IDs: nitro-cli takes
		// "--cpu-ids 1 3".
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEnclave(cmd, env, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.eifPath, "eif-path", "", "path to the enclave image file")
	fl.StringVar(&f.cpuCount, "cpu-count", "", "number of CPUs to give the enclave")
	fl.StringSliceVar(&f.cpuIDs, "cpu-ids", nil, "CPU IDs to give the enclave (comma or space separated)")
	fl.StringVar(&f.memory, "memory", "", "memory in MiB (or with unit M, G, T)")
	fl.StringVar(&f.cid, "enclave-cid", "", "vsock CID of the enclave (0 or unset: pick one)")
	fl.StringVar(&f.name, "enclave-name", "", "enclave name (default: the EIF's base name)")
	fl.BoolVar(&f.debug, "debug-mode", false, "start in debug mode (console available, attestation PCRs zero)")
	fl.BoolVar(&f.attach, "attach-console", false, "attach to the console once started (implies --debug-mode)")
	fl.StringVar(&f.config, "config", "", "JSON file with the run-enclave arguments (nitro-cli format)")
	fl.StringVar(&f.vsockUDS, "vsock-uds", "", "hybrid vsock Unix socket (default <state dir>/<enclave id>/vsock.sock)")
	fl.StringArrayVar(&f.forwards, "forward", nil, "forward guest connections to parent port P to HOST:PORT (P=HOST:PORT, repeatable)")
	fl.BoolVar(&f.kms, "kms", false, "start a local KMS for this enclave (key store shared with 'kms serve') and forward enclave vsock port 8000 to its TLS listener")
	fl.StringVar(&f.kmsEndpoint, "kms-endpoint", "", "forward enclave vsock port 8000 to a running 'kms serve --tls-listen' at HOST:PORT instead")
	fl.StringArrayVar(&f.publishes, "publish", nil, "publish enclave port on a host TCP port (HOSTPORT:ENCLAVEPORT, repeatable)")
	fl.BoolVar(&f.afVsock, "af-vsock", false, "bridge guest connections to the parent to the host's AF_VSOCK")
	fl.StringVar(&f.parentRole, "parent-role", "", "parent IAM role ARN (PCR3)")
	fl.StringVar(&f.parentID, "parent-id", "", "parent instance ID (PCR4 and enclave ID prefix; default "+enclave.DefaultParentID+")")
	fl.StringVar(&f.heartbeat, "heartbeat-timeout", "", "how long to wait for the enclave's heartbeat (seconds or a duration; default 180s)")
	fl.StringVar(&f.seccompAction, "seccomp-action", "kill", "what the supervisor's seccomp filter does with a syscall outside its allowlist: kill, errno (EPERM), log (allow, logged) or off")
	fl.StringVar(&f.uid, "uid", "", "user (name or number) a supervisor started as root runs as (default nobody, else 65534)")
	fl.StringVar(&f.gid, "gid", "", "group (name or number) a supervisor started as root runs as (default the user's group)")
	fl.StringVar(&f.cgroup, "cgroup", "", "cgroup v2 directory (absolute or under /sys/fs/cgroup) to run the supervisor and its VM in")
	return cmd
}

func runEnclave(cmd *cobra.Command, env Env, f *runFlags, args []string) error {
	opts, attach, err := runOptions(cmd, f, args)
	if err != nil {
		return err
	}
	m, err := lifecycleManager(env)
	if err != nil {
		return err
	}
	rec, err := m.Run(cmd.Context(), opts)
	if err != nil {
		return lifecycleErr(err)
	}
	out := jsonout.RunEnclave{
		EnclaveName: rec.Name, EnclaveID: rec.ID, ProcessID: rec.PID, EnclaveCID: rec.CID,
		NumberOfCPUs: len(rec.CPUIDs), CPUIDs: rec.CPUIDs, MemoryMiB: rec.MemoryMiB,
	}
	if err := jsonout.Write(env.Stdout, out); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if attach {
		return attachConsole(cmd.Context(), env, m, rec.ID, 0)
	}
	return nil
}

// runOptions turns run-enclave's flags (or its --config file) into
// enclave.RunOptions, reporting bad values with nitro-cli's error codes.
func runOptions(cmd *cobra.Command, f *runFlags, args []string) (enclave.RunOptions, bool, error) {
	var o enclave.RunOptions
	attach := f.attach
	zeroCID := false // an explicit CID 0, which nitro-cli remarks on
	if len(args) > 0 && !cmd.Flags().Changed("cpu-ids") {
		return o, false, usageError{fmt.Errorf("unexpected arguments %q", args)}
	}
	if f.config != "" {
		for _, n := range []string{"eif-path", "cpu-count", "cpu-ids", "memory", "enclave-cid", "enclave-name", "debug-mode", "attach-console"} {
			if cmd.Flags().Changed(n) {
				return o, false, nitroErr(eConflictingArgument, fmt.Errorf("Conflicting arguments. User provided both `config` and `%s`.", n))
			}
		}
		b, err := os.ReadFile(f.config)
		if err != nil {
			return o, false, nitroErr(eFileOperation, fmt.Errorf("Failed to open config file: %w", err))
		}
		var c runConfig
		if err := json.Unmarshal(b, &c); err != nil {
			return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid JSON format for config file: %w", err))
		}
		if c.CPUCount == nil && c.CPUIDs == nil {
			return o, false, nitroErr(eMissingArgument, errors.New("Missing both `cpu-count` and `cpu-ids`"))
		}
		if c.CPUCount != nil && c.CPUIDs != nil {
			return o, false, nitroErr(eConflictingArgument, errors.New("`cpu-count` and `cpu-ids` cannot be used together"))
		}
		o.EIFPath, o.MemoryMiB, o.CPUIDs, o.Name = c.EIFPath, c.MemoryMiB, c.CPUIDs, c.EnclaveName
		if c.CPUCount != nil {
			o.CPUCount = *c.CPUCount
			if o.CPUCount == 0 {
				return o, false, nitroErr(eInvalidArgument, errors.New("Invalid argument provided. The parameter `cpu-count` must be at least 1"))
			}
		}
		if c.EnclaveCID != nil {
			o.CID = *c.EnclaveCID
			zeroCID = o.CID == 0
		}
		o.Debug = c.DebugMode || c.AttachConsole
		attach = c.AttachConsole
	} else {
		if f.eifPath == "" {
			return o, false, nitroErr(eMissingArgument, errors.New("Missing mandatory argument. User did not provide the `eif-path` argument."))
		}
		if f.memory == "" {
			return o, false, nitroErr(eMissingArgument, errors.New("Missing mandatory argument. User did not provide the `memory` argument."))
		}
		o.EIFPath, o.Name, o.Debug = f.eifPath, f.name, f.debug || f.attach
		mem, err := enclave.ParseMemory(f.memory)
		if err != nil {
			return o, false, lifecycleErr(err)
		}
		o.MemoryMiB = mem
		if f.cpuCount != "" {
			n, err := strconv.ParseUint(f.cpuCount, 10, 31)
			if err != nil || n == 0 {
				return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `cpu-count` is not a valid integer (`%s`)", f.cpuCount))
			}
			o.CPUCount = int(n)
		}
		for _, s := range append(append([]string(nil), f.cpuIDs...), args...) {
			for _, p := range strings.Fields(strings.ReplaceAll(s, ",", " ")) {
				id, err := strconv.ParseUint(p, 10, 32)
				if err != nil {
					return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `cpu-id` is not a valid integer (`%s`)", p))
				}
				o.CPUIDs = append(o.CPUIDs, uint32(id))
			}
		}
		if f.cid != "" {
			cid, err := strconv.ParseUint(f.cid, 10, 64)
			if err != nil {
				return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `enclave-cid` is not a valid integer (`%s`)", f.cid))
			}
			o.CID = cid
			zeroCID = cid == 0
		}
	}
	if zeroCID {
		fmt.Fprintln(cmd.ErrOrStderr(), "The enclave CID will be auto-generated as the provided CID is 0")
	}
	o.VsockUDS, o.AFVsock = f.vsockUDS, f.afVsock
	o.Jail = enclave.Jail{SeccompAction: f.seccompAction, User: f.uid, Group: f.gid, Cgroup: f.cgroup}
	o.ParentRoleARN, o.ParentID = f.parentRole, f.parentID
	for _, s := range f.forwards {
		if _, err := vsockhost.ParseForward(s); err != nil {
			return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `forward` is not valid (`%s`): %w", s, err))
		}
		o.Forwards = append(o.Forwards, s)
	}
	switch {
	case f.kms && f.kmsEndpoint != "":
		return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. Give --kms or --kms-endpoint, not both"))
	case f.kms:
		o.KMS = true
	case f.kmsEndpoint != "":
		ep := strings.TrimPrefix(f.kmsEndpoint, "https://")
		s := fmt.Sprintf("%d=%s", enclave.KMSVsockPort, ep)
		if _, err := vsockhost.ParseForward(s); err != nil {
			return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `kms-endpoint` is not HOST:PORT (`%s`): %w", f.kmsEndpoint, err))
		}
		o.Forwards = append(o.Forwards, s)
	}
	for _, s := range f.publishes {
		if _, err := vsockhost.ParsePublish(s); err != nil {
			return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `publish` is not valid (`%s`): %w", s, err))
		}
		o.Publishes = append(o.Publishes, s)
	}
	if f.heartbeat != "" {
		d, err := parseSeconds(f.heartbeat)
		if err != nil || d <= 0 {
			return o, false, nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `heartbeat-timeout` is not a valid duration (`%s`)", f.heartbeat))
		}
		o.HeartbeatTimeout = d
	}
	return o, attach, nil
}

// parseSeconds parses a number of seconds or a Go duration ("90s", "3m").
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// lifecycleManager returns the enclave manager for env: its state
// directory, CPU pool and supervisor binary.
func lifecycleManager(env Env) (*enclave.Manager, error) {
	exe, err := env.executable()
	if err != nil {
		return nil, fmt.Errorf("find the nitrovm binary: %w", err)
	}
	var pool []uint32
	if s := env.getenv(enclave.CPUPoolEnv); s != "" {
		if pool, err = enclave.ParseCPUPool(s); err != nil {
			return nil, nitroErr(eInvalidArgument, fmt.Errorf("%s: %w", enclave.CPUPoolEnv, err))
		}
	}
	// The supervisor reads this too; a bad value is the user's to fix
	// before an enclave is started.
	if _, err := enclave.VCPUCPUs(env.getenv); err != nil {
		return nil, nitroErr(eInvalidArgument, err)
	}
	return &enclave.Manager{
		Store:           enclave.Store{Dir: enclave.DefaultStateDir(env.Getenv, os.Getuid())},
		Logger:          env.logger(),
		Inspect:         enclave.InspectEIF,
		Spawner:         enclave.ExecSpawner{Executable: exe, Args: []string{"supervise"}},
		CPUPool:         pool,
		MemAvailableMiB: enclave.HostMemAvailableMiB,
		Progress:        env.Stderr,
	}, nil
}

// lifecycleCode maps an enclave error kind to its nitro-cli error code.
func lifecycleCode(k enclave.Kind) int {
	switch k {
	case enclave.KindMissingArgument:
		return eMissingArgument
	case enclave.KindConflictingArgument:
		return eConflictingArgument
	case enclave.KindInvalidArgument:
		return eInvalidArgument
	case enclave.KindProcessSpawn:
		return eProcessSpawn
	case enclave.KindReadFromDisk:
		return eReadFromDisk
	case enclave.KindSocket:
		return eSocket
	case enclave.KindFileOperation:
		return eFileOperation
	case enclave.KindInvalidCPUConfig:
		return eInvalidCPUConfig
	case enclave.KindNoSuchCPU:
		return eNoSuchCPU
	case enclave.KindInsufficientCPUs:
		return eInsufficientCPUs
	case enclave.KindInsufficientMemory:
		return eInsufficientMemory
	case enclave.KindInsufficientMemoryAvailable:
		return eInsufficientAvailable
	case enclave.KindEIF:
		return eEIFParsing
	case enclave.KindBoot:
		return eEnclaveBoot
	case enclave.KindConnection:
		return eConnectionFailure
	case enclave.KindConsole:
		return eConsoleConnection
	case enclave.KindNaming:
		return eEnclaveNaming
	case enclave.KindSignature:
		return eEIFSignatureChecker
	}
	return eUnspecified
}

// lifecycleErr gives an enclave package error its nitro-cli error code.
func lifecycleErr(err error) error {
	if err == nil {
		return nil
	}
	return nitroErr(lifecycleCode(enclave.KindOf(err)), err)
}

// attachConsole streams an enclave's console to stdout as nitro-cli's
// console command does.
func attachConsole(ctx context.Context, env Env, m *enclave.Manager, id string, disconnect time.Duration) error {
	err := m.Console(ctx, id, env.Stdout, disconnect, func() {
		fmt.Fprintln(env.Stdout, "Successfully connected to the console.")
	})
	return lifecycleErr(err)
}

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/enclave"
	"github.com/nitrovm/nitrovm/internal/jail"
	"github.com/nitrovm/nitrovm/internal/timerslack"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// Exit statuses of "nitrovm boot" (0: clean reboot or shutdown, 2: usage).
const (
	bootExitError   = 1 // the VMM failed.
	bootExitPanic   = 3 // the guest kernel panicked or triple-faulted.
	bootExitStopped = 4 // SIGINT/SIGTERM stopped the VM.
)

// defaultBootCmdline is AWS's enclave kernel command line, used with --kernel
// when --cmdline is not given.
const defaultBootCmdline = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"

// bootOptions are the flags of "nitrovm boot".
type bootOptions struct {
	eifPath    string
	kernel     string
	initrds    []string
	cmdline    string
	cmdlineSet bool
	memory     string
	cpus       int
	console    string
	stats      bool
	seccomp    string
}

// bootStats is what "nitrovm boot --stats" prints on stderr when the VM
// stops: why it stopped and KVM's exit accounting (null where the kernel
// has no binary statistics).
type bootStats struct {
	Reason string         `json:"reason"`
	KVM    *vmm.ExitStats `json:"kvm"`
}

// newBootCmd returns the "boot" subcommand: boot an EIF or a bzImage in the
// foreground, console on stdout, until the guest reboots.
func newBootCmd(env Env) *cobra.Command {
	var o bootOptions
	c := &cobra.Command{
		Use:   "boot (--eif-path EIF | --kernel BZIMAGE [--initrd FILE]...) [flags]",
		Short: "Boot an EIF in the foreground (low-level VMM front end)",
		Long: `Boot an EIF, or a bzImage with initrds, in a KVM microVM in the foreground.
The console goes to stdout (or --console FILE|none) until the guest reboots.

With --stats, a one-line JSON object goes to stderr when the VM stops: the exit
reason and KVM's statistics of the run (exits by reason, summed over vCPUs).

Exit status: 0 the guest rebooted or shut down, 3 the guest panicked,
4 stopped by SIGINT/SIGTERM, 1 VMM error, 2 bad usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.cmdlineSet = cmd.Flags().Changed("cmdline")
			return runBoot(cmd, env, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.eifPath, "eif-path", "", "EIF to boot")
	f.StringVar(&o.kernel, "kernel", "", "bzImage to boot (instead of --eif-path)")
	f.StringArrayVar(&o.initrds, "initrd", nil, "initrd for --kernel; repeat to concatenate several, in order")
	f.StringVar(&o.cmdline, "cmdline", "", "kernel command line for --kernel (default: AWS's enclave command line); with --eif-path, appended to the EIF's")
	f.StringVar(&o.memory, "memory", "512", "guest memory in MiB (or NM, NG)")
	f.IntVar(&o.cpus, "cpu-count", 2, "number of vCPUs")
	f.StringVar(&o.console, "console", "stdout", "where the guest console goes: stdout, none, or a file path")
	f.BoolVar(&o.stats, "stats", false, "print KVM's exit counts as JSON on stderr when the VM stops")
	f.StringVar(&o.seccomp, "seccomp-action", "kill", "what the seccomp filter installed once the VM is built does with a syscall outside the VMM's allowlist: kill, errno, log or off")
	return c
}

// runBoot boots the guest and maps its end to the exit status.
func runBoot(cmd *cobra.Command, env Env, o bootOptions) error {
	if (o.eifPath == "") == (o.kernel == "") {
		return usageError{errors.New("boot: give exactly one of --eif-path and --kernel")}
	}
	if o.eifPath != "" && len(o.initrds) > 0 {
		return usageError{errors.New("boot: --initrd goes with --kernel; an EIF carries its own ramdisks")}
	}
	mib, err := parseMemoryMiB(o.memory)
	if err != nil {
		return usageError{fmt.Errorf("boot: --memory: %w", err)}
	}
	if o.cpus < 1 || o.cpus > vmm.MaxCPUs {
		return usageError{fmt.Errorf("boot: --cpu-count %d: want 1..%d", o.cpus, vmm.MaxCPUs)}
	}
	action, err := jail.ParseAction(o.seccomp)
	if err != nil {
		return usageError{fmt.Errorf("boot: --seccomp-action: %w", err)}
	}
	vcpuCPUs, err := enclave.VCPUCPUs(env.getenv)
	if err != nil {
		return usageError{fmt.Errorf("boot: %w", err)}
	}
	if env.getenv("NITROVM_SKIP_HOST_CHECK") != "1" {
		if err := vmm.CheckHost(); err != nil {
			return err
		}
	}
	cfg := vmm.Config{MemoryMiB: mib, CPUs: o.cpus, Logger: env.logger(), VCPUCPUs: vcpuCPUs}
	// run-enclave's supervisor inherits the VMM's timer slack from the
	// thread that starts it; boot's runtime threads already run.
	if !env.InProcess {
		if err := timerslack.SetProcess(timerslack.VMM); err != nil {
			cfg.Logger.Debug("boot: timer slack left at the default for some threads", "err", err)
		}
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if o.eifPath != "" {
		f, err := eif.Open(o.eifPath)
		if err != nil {
			return fmt.Errorf("boot: open EIF: %w", err)
		}
		closers = append(closers, f)
		if f.Arch() != eif.ArchX86_64 {
			return fmt.Errorf("boot: %s is an arm64 EIF; nitrovm boots x86_64 EIFs only", o.eifPath)
		}
		if cfg.Cmdline, err = f.Cmdline(); err != nil {
			return fmt.Errorf("boot: EIF command line: %w", err)
		}
		if o.cmdlineSet {
			cfg.Cmdline += " " + o.cmdline
		}
		k := f.Kernel()
		cfg.Kernel, cfg.KernelSize, cfg.Initrd = k, k.Size(), f.Ramdisks()
	} else {
		k, err := openSection(o.kernel)
		if err != nil {
			return fmt.Errorf("boot: kernel: %w", err)
		}
		closers = append(closers, k)
		cfg.Kernel, cfg.KernelSize = k.SectionReader, k.Size()
		for _, p := range o.initrds {
			r, err := openSection(p)
			if err != nil {
				return fmt.Errorf("boot: initrd: %w", err)
			}
			closers = append(closers, r)
			cfg.Initrd = append(cfg.Initrd, r.SectionReader)
		}
		cfg.Cmdline = defaultBootCmdline
		if o.cmdlineSet {
			cfg.Cmdline = o.cmdline
		}
	}
	switch o.console {
	case "stdout":
		cfg.Console = env.Stdout
	case "none":
	default:
		f, err := os.OpenFile(o.console, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("boot: console file: %w", err)
		}
		closers = append(closers, f)
		cfg.Console = f
	}

	ctx := cmd.Context()
	vm, err := vmm.Build(ctx, cfg)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if !env.InProcess {
		if err := containBoot(action); err != nil {
			vm.Close()
			return fmt.Errorf("boot: %w", err)
		}
	}
	// SIGUSR1 dumps the VM's state to the log (stderr), for hangs.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	dumped := make(chan struct{})
	go func() {
		defer close(dumped)
		for range usr1 {
			vm.Dump("SIGUSR1")
		}
	}()
	exit, err := vm.Run(ctx)
	signal.Stop(usr1)
	close(usr1)
	<-dumped
	if o.stats {
		if werr := json.NewEncoder(env.Stderr).Encode(bootStats{Reason: exit.Reason.String(), KVM: vm.Stats()}); werr != nil && err == nil {
			err = fmt.Errorf("boot: write stats: %w", werr)
		}
	}
	if cerr := vm.Close(); err == nil && cerr != nil {
		return fmt.Errorf("boot: %w", cerr)
	}
	switch exit.Reason {
	case vmm.ExitReboot:
		return nil
	case vmm.ExitPanic:
		return &exitStatusError{code: bootExitPanic, err: fmt.Errorf("guest panic: %s", exit.Detail)}
	case vmm.ExitStopped:
		return &exitStatusError{code: bootExitStopped, err: fmt.Errorf("stopped: %s", exit.Detail)}
	}
	if err == nil {
		err = fmt.Errorf("vmm: %s", exit.Detail)
	}
	return &exitStatusError{code: bootExitError, err: fmt.Errorf("boot: %w", err)}
}

// fileSection is a file read through a SectionReader over all of it.
type fileSection struct {
	*io.SectionReader
	f *os.File
}

// Close closes the file.
func (s fileSection) Close() error { return s.f.Close() }

// openSection opens path for random access.
func openSection(path string) (fileSection, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileSection{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fileSection{}, err
	}
	return fileSection{io.NewSectionReader(f, 0, st.Size()), f}, nil
}

// parseMemoryMiB parses a memory size: N or NM (MiB), NG (GiB).
func parseMemoryMiB(s string) (uint64, error) {
	mult := uint64(1)
	t := strings.TrimSpace(s)
	switch {
	case strings.HasSuffix(t, "G"), strings.HasSuffix(t, "g"):
		mult, t = 1024, t[:len(t)-1]
	case strings.HasSuffix(t, "M"), strings.HasSuffix(t, "m"):
		t = t[:len(t)-1]
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a positive size in MiB", s)
	}
	return n * mult, nil
}

// containBoot contains the foreground VMM once its VM is built: no core
// file, no capabilities, no new privileges, the seccomp allowlist. Unlike
// run-enclave's supervisor it keeps the caller's identity and mount
// namespace: boot is a low-level tool whose console and files are the
// caller's.
func containBoot(action jail.Action) error {
	fds, err := jail.OpenFDs()
	if err != nil {
		fds = 0
	}
	if err := jail.SetLimits(uint64(fds + 64)); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := jail.DropBoundingSet(); err != nil {
			return err
		}
	}
	if err := jail.ClearCapabilities(); err != nil {
		return err
	}
	return jail.InstallSeccomp(action)
}

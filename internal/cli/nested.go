package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nitrovm/nitrovm/internal/nested"
	"github.com/nitrovm/nitrovm/internal/nested/l1init"
	"github.com/spf13/cobra"
)

// newNestedCmd returns the "nested" subcommand: run a command (usually
// nitrovm itself) inside a QEMU-emulated Linux VM that has a working KVM,
// for machines where /dev/kvm is missing or cannot run Linux guests.
func newNestedCmd(env Env) *cobra.Command {
	var (
		memory, cpus int
		files        []string
		envs         []string
		timeout      time.Duration
		binary       string
		kernelLog    bool
		asInit       bool
		onCPU0       bool
		vcpusOff     bool
	)
	cmd := &cobra.Command{
		Use:   "nested [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a nested KVM-capable Linux VM (QEMU TCG), for hosts without usable KVM",
		Long: `Boots a Linux VM under QEMU's TCG emulator with AMD SVM, where /dev/kvm
works, copies this nitrovm binary to /bin/nitrovm and the --file files into
it, runs COMMAND there as root and exits with COMMAND's exit status.

Needs qemu-system-x86_64 and the L1 kernel: run scripts/deps.sh and
scripts/kernel/l1-kernel.sh once. Example:

  nitrovm nested --file /demo.eif=./demo.eif -- nitrovm boot --eif-path /demo.eif

--env K=V (repeatable) adds K=V to COMMAND's environment.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if asInit {
				if os.Getpid() != 1 {
					return usageError{errors.New("--l1init is for the nested VM's init only")}
				}
				l1init.Main()
				return nil
			}
			if len(args) == 0 {
				return usageError{errors.New("nested: missing COMMAND (nitrovm nested [flags] -- COMMAND...)")}
			}
			if onCPU0 && vcpusOff {
				return usageError{errors.New("nested: --command-on-cpu0 and --only-vcpus-off-cpu0 exclude each other")}
			}
			if err := nested.ValidateEnv(envs); err != nil {
				return usageError{fmt.Errorf("%w (--env K=V)", err)}
			}
			if binary == "" {
				exe, err := env.executable()
				if err != nil {
					return fmt.Errorf("nested: find nitrovm binary: %w", err)
				}
				binary = exe
			}
			fileMap := map[string]string{}
			for _, f := range files {
				dst, src, ok := strings.Cut(f, "=")
				if !ok || dst == "" || src == "" {
					return usageError{fmt.Errorf("nested: --file %q: want L1PATH=HOSTPATH", f)}
				}
				fileMap[dst] = src
			}
			getenv := env.Getenv
			if getenv == nil {
				getenv = func(string) string { return "" }
			}
			var kernelOut io.Writer
			if kernelLog {
				kernelOut = env.Stderr
			}
			res, err := nested.Run(c.Context(), nested.Options{
				Nitrovm:   binary,
				Files:     fileMap,
				Command:   args,
				Env:       envs,
				MemoryMiB: memory,
				CPUs:      cpus,
				// CommandOnCPU0 is false by default: QEMU's IGNNE race
				// (l1init.commandCPUs) reaches guests on CPU 0 only.
				CommandOnCPU0:    onCPU0,
				OnlyVCPUsOffCPU0: vcpusOff,
				Timeout:          timeout,
				Output:           env.Stdout,
				Logger:           env.logger(),
				CacheDir:         nested.DefaultCacheDir(getenv),
				KernelLog:        kernelLog,
				// L1's kernel console is a serial port of its own,
				// shown with --kernel-log only: mixed into a caller's
				// 2>&1 it could split the command's output lines.
				KernelOutput: kernelOut,
				WarnOldQEMU:  true,
			})
			if err != nil {
				return err
			}
			if res.Fault != nil {
				fmt.Fprintf(env.Stderr, "nitrovm: nested: L1 failed during the run: %v\n", res.Fault)
			}
			if res.ExitCode != 0 {
				return &exitStatusError{code: res.ExitCode}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&memory, "memory", nested.DefaultMemoryMiB, "RAM of the nested VM in MiB")
	fl.IntVar(&cpus, "cpus", nested.DefaultCPUs, "vCPUs of the nested VM (COMMAND runs on all but CPU 0 unless --command-on-cpu0)")
	fl.BoolVar(&onCPU0, "command-on-cpu0", false, "let COMMAND and its guests run on the nested VM's CPU 0 too (QEMU's TCG then corrupts guests on it at random; see docs/nested.md)")
	fl.BoolVar(&vcpusOff, "only-vcpus-off-cpu0", false, "keep only nitrovm's vCPU threads off the nested VM's CPU 0 (NITROVM_VCPU_CPUS), so its device threads may use CPU 0; for commands that start no other VMM")
	fl.StringArrayVar(&files, "file", nil, "copy HOSTPATH to L1PATH in the nested VM (L1PATH=HOSTPATH, repeatable)")
	fl.StringArrayVar(&envs, "env", nil, "set K=V in COMMAND's environment (repeatable)")
	fl.DurationVar(&timeout, "timeout", nested.DefaultTimeout, "give up after this long")
	fl.StringVar(&binary, "nitrovm", "", "nitrovm binary to put in the VM (default: this one)")
	fl.BoolVar(&kernelLog, "kernel-log", false, "show the nested VM's kernel console (all levels) on stderr")
	fl.BoolVar(&asInit, "l1init", false, "run as the nested VM's init")
	_ = fl.MarkHidden("l1init")
	return cmd
}

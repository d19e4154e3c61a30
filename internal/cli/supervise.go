package cli

import (
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/enclave"
)

// newSuperviseCmd returns the hidden "supervise" subcommand: the detached
// process run-enclave starts to own one enclave's VM.
func newSuperviseCmd(env Env) *cobra.Command {
	return &cobra.Command{
		Use:    "supervise ENCLAVE_DIR",
		Hidden: true,
		Short:  "Internal: the detached process that owns one enclave",
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cpus, err := enclave.VCPUCPUs(env.getenv)
			if err != nil {
				return err
			}
			var launcher enclave.Launcher = enclave.VMLauncher{VCPUCPUs: cpus}
			if env.Launcher != nil {
				launcher = env.Launcher
			}
			opts := enclave.SuperviseOptions{
				Launcher: launcher, Logger: env.logger(),
				Namespaces: env.getenv(enclave.NamespacesEnv), Probe: env.getenv(enclave.ProbeEnv) == "1",
			}
			if f := statusPipe(); f != nil {
				opts.Status = f
			}
			return enclave.Supervise(cmd.Context(), args[0], opts)
		},
	}
}

// statusPipe returns the start status pipe run-enclave passes as
// enclave.StatusFD, or nil when that descriptor is not a pipe (supervise
// run by hand).
func statusPipe() *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(enclave.StatusFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	return os.NewFile(enclave.StatusFD, "status")
}

// Package cli implements the nitrovm command line: flags to options structs,
// JSON to stdout, one-line errors to stderr. It holds no enclave logic.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/internal/enclave"
)

// Env is what a command may touch of the outside world. Tests fill it with
// buffers; main fills it with the process's streams and environment.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv looks up an environment variable; nil means none are set.
	Getenv func(string) string
	// Executable is the path of the running nitrovm binary, used to start
	// detached supervisors; empty means os.Executable.
	Executable string
	// Launcher starts the VMs of the supervise command; nil means
	// enclave.VMLauncher (KVM microVMs). Tests pass a fake.
	Launcher enclave.Launcher
	// InProcess marks a caller that runs commands inside its own
	// long-lived process (a test binary running boot several times): boot
	// then leaves the process uncontained, since dropping capabilities,
	// installing seccomp and lowering limits are permanent and
	// process-wide. The nitrovm binary never sets it.
	InProcess bool
}

func (e Env) getenv(k string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(k)
}

// logger returns the logger commands use for progress and diagnostics. Level
// is Info, or Debug when NITROVM_LOG=debug.
func (e Env) logger() *slog.Logger {
	level := slog.LevelInfo
	if strings.EqualFold(e.getenv("NITROVM_LOG"), "debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: level}))
}

// Run runs the command line args (args[0] is the program name) and returns
// the process exit status. Invoked as "nitro-cli" it behaves as nitro-cli.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	name := "nitrovm"
	if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "nitro-cli") {
		name = "nitro-cli"
	}
	root := newRootCmd(env, name)
	root.SetArgs(args[1:])
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	return reportError(env.Stderr, name, err)
}

func newRootCmd(env Env, name string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         "AWS Nitro Enclaves emulator: EIF toolkit, KVM microVM, vsock, NSM, nitro-cli lifecycle",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr(c, err)
	})
	// --version and -V, as nitro-cli has them (clap's "<name> <version>").
	root.Version = versionLine(name)
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().BoolP("version", "V", false, "print the version")
	root.AddCommand(
		newDescribeEIFCmd(env),
		newBuildEIFCmd(env),
		newPCRCmd(env),
		newSignEIFCmd(env),
		newExplainCmd(env),
		newCACmd(env),
		newAttestationCmd(env),
		newBootCmd(env),
		newRunEnclaveCmd(env),
		newDescribeEnclavesCmd(env),
		newTerminateEnclaveCmd(env),
		newConsoleCmd(env),
		newBuildEnclaveCmd(env),
		newImagesCmd(env),
		newSuperviseCmd(env),
		newNestedCmd(env),
		newKMSCmd(env),
		newVersionCmd(env),
	)
	return root
}

// writeJSON writes v to w as indented JSON followed by a newline, the way
// nitro-cli prints its results.
// Like serde_json, it does not escape <, > and &.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// executable returns the path of the running binary.
func (e Env) executable() (string, error) {
	if e.Executable != "" {
		return e.Executable, nil
	}
	return os.Executable()
}

// errNotImplemented is returned by subcommands that are not built yet.
var errNotImplemented = errors.New("not implemented yet")

package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// nitroCLIVersion is the nitro-cli release whose commands, flags and output
// nitrovm follows, as "nitro-cli --version" reports it (the
// aws-nitro-enclaves-cli crate version, 1.5.2 on crates.io).
const nitroCLIVersion = "1.5.2"

// nitrovmVersion returns the module version the binary was built from, or
// "(devel)".
func nitrovmVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// versionLine is what --version prints. As "nitro-cli" it is nitro-cli's
// line, clap's "<app name> <version>" with the app named "Nitro CLI"
// (aws-nitro-enclaves-cli src/lib.rs, create_app!), then nitrovm's own
// version in parentheses; as "nitrovm" it is "nitrovm <version>".
func versionLine(prog string) string {
	if prog == "nitro-cli" {
		return fmt.Sprintf("Nitro CLI %s (nitrovm %s)", nitroCLIVersion, nitrovmVersion())
	}
	return "nitrovm " + nitrovmVersion()
}

// newVersionCmd returns the "version" subcommand.
func newVersionCmd(env Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the nitrovm version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(env.Stdout, "nitrovm %s\n", nitrovmVersion())
			return err
		},
	}
}

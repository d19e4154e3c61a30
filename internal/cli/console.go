package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// newConsoleCmd returns the "console" subcommand.
func newConsoleCmd(env Env) *cobra.Command {
	var id, name, disconnect string
	cmd := &cobra.Command{
		Use:   "console (--enclave-id ID | --enclave-name NAME) [--disconnect-timeout SECONDS]",
		Short: "Attach to a debug-mode enclave's console (nitro-cli console)",
		Long: `Stream a debug-mode enclave's console to stdout, starting with its most
recent output, until the enclave exits or the disconnect timeout passes.
Production enclaves have no console (error E44), as on Nitro.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var timeout time.Duration
			if disconnect != "" {
				n, err := strconv.ParseUint(disconnect, 10, 32)
				if err != nil {
					return nitroErr(eInvalidArgument, fmt.Errorf("Invalid argument provided. The parameter `disconnect-timeout` is not a valid integer (`%s`)", disconnect))
				}
				timeout = time.Duration(n) * time.Second
			}
			m, err := lifecycleManager(env)
			if err != nil {
				return err
			}
			eid, err := resolveEnclaveID(m, id, name)
			if err != nil {
				return err
			}
			return attachConsole(cmd.Context(), env, m, eid, timeout)
		},
	}
	cmd.Flags().StringVar(&id, "enclave-id", "", "ID of the enclave")
	cmd.Flags().StringVar(&name, "enclave-name", "", "name of the enclave")
	cmd.Flags().StringVar(&disconnect, "disconnect-timeout", "", "disconnect after this many seconds")
	return cmd
}

package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/internal/cli/jsonout"
)

// newDescribeEnclavesCmd returns the "describe-enclaves" subcommand.
func newDescribeEnclavesCmd(env Env) *cobra.Command {
	var metadata bool
	cmd := &cobra.Command{
		Use:   "describe-enclaves",
		Short: "List the running enclaves as JSON (nitro-cli describe-enclaves)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := lifecycleManager(env)
			if err != nil {
				return err
			}
			recs, err := m.List()
			if err != nil {
				return lifecycleErr(err)
			}
			out := make([]jsonout.DescribeEnclave, 0, len(recs))
			for _, r := range recs {
				d := jsonout.DescribeEnclave{
					EnclaveName: r.Name, EnclaveID: r.ID, ProcessID: r.PID, EnclaveCID: r.CID,
					NumberOfCPUs: len(r.CPUIDs), CPUIDs: r.CPUIDs, MemoryMiB: r.MemoryMiB,
					State: string(r.State), Flags: r.Flags(), Measurements: r.Measurements,
				}
				if metadata {
					d.ImageName, d.ImageVersion, d.Metadata = r.ImageName, r.ImageVersion, r.Metadata
					if r.BootTimeMs > 0 {
						ms := r.BootTimeMs
						d.BootTimeMs = &ms
					}
				}
				out = append(out, d)
			}
			if err := jsonout.Write(env.Stdout, out); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&metadata, "metadata", false, "also print each enclave's EIF metadata (ImageName, ImageVersion, Metadata) and its boot time (BootTimeMs)")
	return cmd
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr(cmd, fmt.Errorf("unexpected arguments %q", args))
	}
	return nil
}

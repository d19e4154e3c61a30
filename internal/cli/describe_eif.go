package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/eif"
)

// newDescribeEIFCmd returns the "describe-eif" subcommand: nitro-cli's
// describe-eif, printing EifDescribeInfo as JSON.
func newDescribeEIFCmd(env Env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "describe-eif --eif-path FILE",
		Short: "Describe an EIF: version, measurements, signature, metadata",
		Long: `Describe an EIF the way nitro-cli describe-eif does: EIF version, PCR0/1/2
(and PCR8 when signed), signing certificate, CRC and signature checks, and the
image metadata. The JSON is printed even when the CRC or signature check fails,
but the command then exits with E35.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError{errors.New("describe-eif: --eif-path is required")}
			}
			return runDescribeEIF(env, path)
		},
	}
	cmd.Flags().StringVar(&path, "eif-path", "", "path of the EIF to describe")
	return cmd
}

func runDescribeEIF(env Env, path string) error {
	f, err := eif.Open(path)
	if err != nil {
		return nitroErr(eEIFParsing, fmt.Errorf("describe eif: %w", err))
	}
	defer f.Close()
	d, err := f.Describe()
	if err != nil {
		return nitroErr(eEIFParsing, fmt.Errorf("describe eif %s: %w", path, err))
	}
	if err := writeJSON(env.Stdout, d); err != nil {
		return err
	}
	switch {
	case !d.CheckCRC:
		return nitroErr(eEIFParsing, fmt.Errorf("describe eif %s: %w (CheckCRC is false)", path, eif.ErrCRCMismatch))
	case d.SignatureCheck != nil && !*d.SignatureCheck:
		sig, err := f.Signature()
		if err == nil {
			err = sig.CheckPCR0(d.Measurements.PCR0)
		}
		return nitroErr(eEIFParsing, fmt.Errorf("describe eif %s: signature check failed: %w", path, err))
	}
	return nil
}

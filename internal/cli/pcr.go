package cli

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/eif"
)

// newPCRCmd returns the "pcr" subcommand: nitro-cli's pcr, printing
// {"PCR": ...} for --input or {"PCR8": ...} for --signing-certificate.
func newPCRCmd(env Env) *cobra.Command {
	var input, cert string
	cmd := &cobra.Command{
		Use:   "pcr (--input FILE | --signing-certificate CERT.pem)",
		Short: "Compute a PCR value of a file or of a signing certificate",
		Long: `Print the PCR a file's contents would give, extend(SHA384(contents)), as
{"PCR": hex}; or, with --signing-certificate, the PCR8 an EIF signed with that
PEM certificate has, extend(SHA384(DER)), as {"PCR8": hex}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case input != "" && cert != "":
				return usageError{errors.New("pcr: --input and --signing-certificate are mutually exclusive")}
			case input == "" && cert == "":
				return usageError{errors.New("pcr: one of --input or --signing-certificate is required")}
			case input != "":
				fd, err := os.Open(input)
				if err != nil {
					return nitroErr(eFileOperation, fmt.Errorf("pcr: %w", err))
				}
				defer fd.Close()
				v, err := eif.ReaderPCR(fd)
				if err != nil {
					return nitroErr(eFileOperation, fmt.Errorf("pcr: read %s: %w", input, err))
				}
				return writeJSON(env.Stdout, map[string]string{"PCR": hex.EncodeToString(v)})
			default:
				b, err := os.ReadFile(cert)
				if err != nil {
					return nitroErr(eFileOperation, fmt.Errorf("pcr: %w", err))
				}
				c, err := parseCertificatePEM(b)
				if err != nil {
					return nitroErr(eHasher, fmt.Errorf("pcr: %s: %w", cert, err))
				}
				return writeJSON(env.Stdout, map[string]string{"PCR8": hex.EncodeToString(eif.PCR8(c.Raw))})
			}
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "file whose contents to measure")
	cmd.Flags().StringVar(&cert, "signing-certificate", "", "PEM signing certificate whose PCR8 to compute")
	return cmd
}

// parseCertificatePEM parses the first PEM CERTIFICATE block of b.
func parseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return c, nil
		}
	}
}

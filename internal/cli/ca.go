package cli

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/ca"
)

// newCACmd returns the "ca" subcommand: export, rotate and describe the
// local attestation CA in the state directory.
func newCACmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage the local attestation CA (export, rotate, describe)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return usageErr(c, errors.New("missing subcommand (export, rotate, describe)"))
		},
	}
	var out string
	export := &cobra.Command{
		Use:   "export [--out FILE]",
		Short: "Print the root certificate (PEM) that attestation documents chain to",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runCAExport(env, out)
		},
	}
	export.Flags().StringVar(&out, "out", "", "write the PEM to FILE instead of stdout")
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the CA with a new root, intermediates and keys",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := ca.DefaultDir(env.getenv)
			if err != nil {
				return err
			}
			c, err := ca.Rotate(dir, ca.Options{})
			if err != nil {
				return err
			}
			return writeJSON(env.Stdout, caInfo(dir, c))
		},
	}
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Show the CA chain (created on first use)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := ca.DefaultDir(env.getenv)
			if err != nil {
				return err
			}
			c, err := ca.LoadOrCreate(dir, ca.Options{NoRenew: true})
			if err != nil {
				return err
			}
			return writeJSON(env.Stdout, caInfo(dir, c))
		},
	}
	cmd.AddCommand(export, rotate, describe)
	return cmd
}

func runCAExport(env Env, out string) error {
	dir, err := ca.DefaultDir(env.getenv)
	if err != nil {
		return err
	}
	c, err := ca.LoadOrCreate(dir, ca.Options{NoRenew: true})
	if err != nil {
		return err
	}
	if out == "" {
		_, err := env.Stdout.Write(c.RootPEM())
		return err
	}
	if err := os.WriteFile(out, c.RootPEM(), 0o644); err != nil {
		return fmt.Errorf("write root certificate: %w", err)
	}
	return writeJSON(env.Stdout, struct {
		Path string
		Root certInfo
	}{out, describeCert(c.Root)})
}

// certInfo is the JSON description of one CA certificate.
type certInfo struct {
	Subject           string
	NotBefore         string
	NotAfter          string
	SHA256Fingerprint string
}

func describeCert(c *x509.Certificate) certInfo {
	fp := sha256.Sum256(c.Raw)
	return certInfo{
		Subject:           c.Subject.String(),
		NotBefore:         c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:          c.NotAfter.UTC().Format(time.RFC3339),
		SHA256Fingerprint: hex.EncodeToString(fp[:]),
	}
}

func caInfo(dir string, c *ca.CA) any {
	return struct {
		StateDir string
		Root     certInfo
		Regional certInfo
		Instance certInfo
	}{dir, describeCert(c.Root), describeCert(c.Regional), describeCert(c.Instance)}
}

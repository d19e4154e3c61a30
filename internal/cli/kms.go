package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/ca"
	"github.com/nitrovm/nitrovm/kms"
)

// newKMSCmd returns the "kms" subcommand: a local AWS KMS that checks
// attestation documents (package kms).
func newKMSCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kms",
		Short: "Local AWS KMS with attestation (Recipient) and key policies",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return usageErr(c, errors.New("missing subcommand (serve, call)"))
		},
	}
	cmd.AddCommand(newKMSServeCmd(env), newKMSCallCmd(env))
	return cmd
}

// kmsServeFlags are the flags of "kms serve".
type kmsServeFlags struct {
	listen, tlsListen, region, credentials, stateDir string
	roots                                            []string
}

func newKMSServeCmd(env Env) *cobra.Command {
	var fl kmsServeFlags
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR] [--tls-listen ADDR] [flags]",
		Short: "Serve AWS KMS's JSON protocol; prints its endpoints, logs one line per request",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runKMSServe(c, env, &fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.listen, "listen", "127.0.0.1:7080", "plain-HTTP listen address (\"\" = none)")
	f.StringVar(&fl.tlsListen, "tls-listen", "", "TLS listen address; its certificate names kms.<region>.amazonaws.com and is issued by the local CA")
	f.StringVar(&fl.region, "region", kms.DefaultRegion, "region in ARNs and in the TLS certificate's name")
	f.StringArrayVar(&fl.roots, "attestation-root", nil, "PEM file of a root trusted for attestation documents besides the local CA's (repeatable)")
	f.StringVar(&fl.credentials, "credentials", "", "AWS shared-credentials file: verify SigV4 signatures against its keys (default: accept any)")
	f.StringVar(&fl.stateDir, "state-dir", "", "key store directory (default $NITROVM_STATE_DIR/kms, $XDG_STATE_HOME/nitrovm/kms or ~/.local/state/nitrovm/kms)")
	return cmd
}

func runKMSServe(c *cobra.Command, env Env, fl *kmsServeFlags) error {
	if fl.listen == "" && fl.tlsListen == "" {
		return usageError{errors.New("kms serve: give --listen or --tls-listen")}
	}
	cfg, err := kmsLocalConfig(env, fl.stateDir, fl.region, fl.roots)
	if err != nil {
		return err
	}
	if fl.credentials != "" {
		data, err := os.ReadFile(fl.credentials)
		if err != nil {
			return nitroErr(eReadFromDisk, fmt.Errorf("read --credentials: %w", err))
		}
		if cfg.Credentials, err = kms.ParseCredentials(data); err != nil {
			return usageError{fmt.Errorf("invalid --credentials %s: %w", fl.credentials, err)}
		}
	}
	cfg.HTTPAddr, cfg.TLSAddr, cfg.Logger = fl.listen, fl.tlsListen, env.logger()
	l, err := kms.StartLocal(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := writeJSON(env.Stdout, l.Endpoints); err != nil {
		return err
	}
	return l.Serve(c.Context())
}

// kmsLocalConfig fills the directories, region and extra roots of a local
// KMS from flags and the environment.
func kmsLocalConfig(env Env, stateDir, region string, roots []string) (kms.LocalConfig, error) {
	cfg := kms.LocalConfig{Dir: stateDir, Region: region}
	var err error
	if cfg.Dir == "" {
		if cfg.Dir, err = kms.DefaultDir(env.getenv); err != nil {
			return cfg, err
		}
	}
	if cfg.CADir, err = ca.DefaultDir(env.getenv); err != nil {
		return cfg, err
	}
	for _, r := range roots {
		data, err := os.ReadFile(r)
		if err != nil {
			return cfg, nitroErr(eReadFromDisk, fmt.Errorf("read --attestation-root: %w", err))
		}
		cfg.ExtraRoots = append(cfg.ExtraRoots, data)
	}
	return cfg, nil
}

func newKMSCallCmd(env Env) *cobra.Command {
	var region, stateDir string
	cmd := &cobra.Command{
		Use:   "call OPERATION [JSON]",
		Short: "Run one KMS operation (e.g. CreateKey, Encrypt) directly on the key store, no server needed",
		Long: "Run one KMS operation with a JSON request body, exactly as a client would send it " +
			"(blobs in base64), on the key store a 'kms serve' or 'run-enclave --kms' shares, and print the JSON response. " +
			"A Recipient's attestation document is checked against the local CA's root, as 'kms serve' does.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			body := "{}"
			if len(args) == 2 {
				body = args[1]
			}
			cfg, err := kmsLocalConfig(env, stateDir, region, nil)
			if err != nil {
				return err
			}
			svc, err := kms.OpenLocal(cfg)
			if err != nil {
				return err
			}
			out, err := svc.Do(args[0], []byte(body))
			if err != nil {
				return fmt.Errorf("kms call %s: %w", args[0], err)
			}
			b, err := json.Marshal(out)
			if err != nil {
				return err
			}
			var v any
			json.Unmarshal(b, &v)
			return writeJSON(env.Stdout, v)
		},
	}
	cmd.Flags().StringVar(&region, "region", kms.DefaultRegion, "region in ARNs")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "key store directory (default as for 'kms serve')")
	return cmd
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/eif"
)

// signEIFFlags are sign-eif's flags.
type signEIFFlags struct {
	path, cert, key string
}

// newSignEIFCmd returns "sign-eif": nitro-cli's sign-eif, which signs an
// existing EIF or replaces its signature.
func newSignEIFCmd(env Env) *cobra.Command {
	var f signEIFFlags
	cmd := &cobra.Command{
		Use:   "sign-eif --eif-path FILE --signing-certificate CERT.pem --private-key KEY.pem",
		Short: "Sign an EIF, or replace its signature (nitro-cli sign-eif)",
		Long: `Sign an existing EIF with an ECDSA key (P-256, P-384 or P-521; SEC 1 or
PKCS #8 PEM) and its certificate, as nitro-cli sign-eif does: the signature
covers PCR0 and sets PCR8; an EIF that is already signed gets the new
signature in place of the old. Every other byte is kept, so PCR0-2 do not
change. The EIF is rewritten beside itself and renamed into place, so a
failure leaves it as it was. Prints the measurements as build-enclave does.

nitro-cli also takes a KMS key ARN as --private-key; nitrovm does not (E60).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSignEIF(env, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.path, "eif-path", "", "EIF to sign (rewritten in place)")
	fl.StringVar(&f.cert, "signing-certificate", "", "PEM signing certificate (needs --private-key)")
	fl.StringVar(&f.key, "private-key", "", "PEM ECDSA private key of --signing-certificate")
	return cmd
}

func runSignEIF(env Env, f signEIFFlags) error {
	switch {
	case f.path == "":
		return nitroErr(eMissingArgument, errors.New("--eif-path is required"))
	case (f.cert == "") != (f.key == ""):
		return nitroErr(eConflictingArgument, errors.New("--signing-certificate and --private-key go together"))
	case f.cert == "":
		return nitroErr(eEIFSigning, errors.New("no signing key: give --signing-certificate and --private-key"))
	}
	signer, cert, err := loadSigningKey(f.key, f.cert)
	if err != nil {
		return nitroErr(eEIFSigning, err)
	}
	// A symbolic link keeps pointing at the signed file, as with an
	// in-place write.
	path, err := filepath.EvalSymlinks(f.path)
	if err != nil {
		return nitroErr(eFileOperation, fmt.Errorf("open eif: %w", err))
	}
	st, err := os.Stat(path)
	if err != nil {
		return nitroErr(eFileOperation, fmt.Errorf("open eif: %w", err))
	}
	ef, err := eif.Open(path)
	if err != nil {
		return nitroErr(eEIFParsing, err)
	}
	defer ef.Close()
	m, err := replaceFile(path, st.Mode().Perm(), func(w io.Writer) (*eif.Measurements, error) {
		return ef.Sign(w, signer, cert)
	})
	var fe *eif.FormatError
	switch {
	case errors.As(err, &fe): // found while measuring: a bad CRC, say.
		return nitroErr(eEIFParsing, err)
	case err != nil:
		return nitroErr(eEIFSigning, err)
	}
	fmt.Fprintln(env.Stderr, "Enclave Image successfully signed.")
	return writeJSON(env.Stdout, struct {
		Measurements *eif.Measurements `json:"Measurements"`
	}{m})
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// NitroError is an error with a nitro-cli error code. nitro-cli prints these
// as "[ E26 ] message" and exits with the code as status; see
// aws-nitro-enclaves-cli src/common/document_errors.rs for the catalogue.
type NitroError struct {
	Code int   // nitro-cli's E number, also the exit status.
	Err  error // what went wrong.
}

func (e *NitroError) Error() string { return fmt.Sprintf("[ E%02d ] %v", e.Code, e.Err) }
func (e *NitroError) Unwrap() error { return e.Err }

// nitroErr wraps err with nitro-cli error code code.
func nitroErr(code int, err error) error { return &NitroError{Code: code, Err: err} }

// nitro-cli error codes used by nitrovm, from aws-nitro-enclaves-cli
// src/common/document_errors.rs (ERROR_CODES).
const (
	eUnspecified           = 0  // E00 UnspecifiedError
	eMissingArgument       = 1  // E01 MissingArgument
	eConflictingArgument   = 2  // E02 ConflictingArgument
	eInvalidArgument       = 3  // E03 InvalidArgument
	eProcessSpawn          = 5  // E05 ProcessSpawnFailure
	eReadFromDisk          = 7  // E07 ReadFromDiskFailure
	eFileOperation         = 19 // E19 FileOperationFailure
	eInvalidCPUConfig      = 20 // E20 InvalidCpuConfiguration
	eNoSuchCPU             = 21 // E21 NoSuchCpuAvailableInPool
	eInsufficientCPUs      = 22 // E22 InsufficientCpus
	eInsufficientMemory    = 26 // E26 InsufficientMemoryRequested
	eInsufficientAvailable = 27 // E27 InsufficientMemoryAvailable
	eIoctlFailure          = 29 // E29 IoctlFailure
	eEIFParsing            = 35 // E35 EifParsingError
	eEnclaveBoot           = 36 // E36 EnclaveBootFailure
	eConnectionFailure     = 39 // E39 EnclaveProcessConnectionFailure
	eConsoleConnection     = 44 // E44 EnclaveConsoleConnectionFailure
	eIntegerParsing        = 47 // E47 IntegerParsingError
	eEIFBuilding           = 48 // E48 EifBuildingError
	eDockerImageBuild      = 49 // E49 DockerImageBuildError
	eDockerImagePull       = 50 // E50 DockerImagePullError
	eBlobsPathNotSet       = 52 // E52 BlobsPathNotSet
	eHasher                = 57 // E57 HasherError
	eEnclaveNaming         = 58 // E58 EnclaveNamingError
	eEIFSignatureChecker   = 59 // E59 EIFSignatureCheckerError
	eEIFSigning            = 60 // E60 EIFSigningError
)

// usageError marks errors in how the command was called (bad flags).
// reportError prints it after the program name, so its message must not
// start with it again.
type usageError struct{ error }

// usageErr returns err as a usage error of c: "SUBCOMMAND: err (see 'PROG
// SUBCOMMAND --help')", or "err (see 'PROG --help')" for the root command.
func usageErr(c *cobra.Command, err error) error {
	see := fmt.Sprintf("(see '%s --help')", c.CommandPath())
	if !c.HasParent() {
		return usageError{fmt.Errorf("%w %s", err, see)}
	}
	sub := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	return usageError{fmt.Errorf("%s: %w %s", sub, err, see)}
}

func (u usageError) Unwrap() error { return u.error }

// exitStatusError ends the command with exit status code, printing
// "<prog>: <err>" (nothing if err is nil). Used by "boot" for its own codes.
type exitStatusError struct {
	code int
	err  error
}

func (e *exitStatusError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitStatusError) Unwrap() error { return e.err }

// reportError prints err as one line on w and returns the exit status.
func reportError(w io.Writer, prog string, err error) int {
	var xe *exitStatusError
	if errors.As(err, &xe) {
		if xe.err != nil {
			fmt.Fprintf(w, "%s: %s\n", prog, oneLine(xe.err.Error()))
		}
		return xe.code
	}
	var ne *NitroError
	if errors.As(err, &ne) {
		fmt.Fprintln(w, oneLine(ne.Error()))
		if ne.Code > 0 && ne.Code < 256 {
			return ne.Code
		}
		return 1
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "%s: %s\n", prog, oneLine(err.Error()))
		return 2
	}
	fmt.Fprintf(w, "%s: error: %s\n", prog, oneLine(err.Error()))
	return 1
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

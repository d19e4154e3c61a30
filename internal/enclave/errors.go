package enclave

import (
	"errors"
	"fmt"
)

// Kind classifies an Error so that callers can map it to nitro-cli's error
// codes without matching message text.
type Kind int

// Error kinds, named after the nitro-cli errors they correspond to
// (aws-nitro-enclaves-cli src/common/document_errors.rs).
const (
	KindUnspecified                 Kind = iota // E00 UnspecifiedError
	KindMissingArgument                         // E01 MissingArgument
	KindConflictingArgument                     // E02 ConflictingArgument
	KindInvalidArgument                         // E03 InvalidArgument
	KindProcessSpawn                            // E05 ProcessSpawnFailure
	KindReadFromDisk                            // E07 ReadFromDiskFailure
	KindSocket                                  // E11 SocketError
	KindFileOperation                           // E19 FileOperationFailure
	KindInvalidCPUConfig                        // E20 InvalidCpuConfiguration
	KindNoSuchCPU                               // E21 NoSuchCpuAvailableInPool
	KindInsufficientCPUs                        // E22 InsufficientCpus
	KindInsufficientMemory                      // E26 InsufficientMemoryRequested
	KindInsufficientMemoryAvailable             // E27 InsufficientMemoryAvailable
	KindEIF                                     // E35 EifParsingError
	KindBoot                                    // E36 EnclaveBootFailure
	KindConnection                              // E39 EnclaveProcessConnectionFailure
	KindConsole                                 // E44 EnclaveConsoleConnectionFailure
	KindNaming                                  // E58 EnclaveNamingError
	KindSignature                               // E59 EIFSignatureCheckerError
)

// Error is a lifecycle failure of a known Kind. Msg is the user-facing text,
// worded as nitro-cli words it where nitro-cli has the same check.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // underlying cause, if any
}

// Error returns Msg, followed by the cause if there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Msg, e.Err)
	}
	return e.Msg
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of the first *Error in err's chain, or
// KindUnspecified.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindUnspecified
}

func newErr(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

func wrapErr(k Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: err}
}

package kms

import "fmt"

// Error is a KMS error as the JSON protocol returns it: HTTP 400 (500 for
// KMSInternalException) with {"__type": Type, "message": Message}.
type Error struct {
	Type    string // e.g. "NotFoundException"
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Error types, as AWS KMS names them (API reference, "Errors" of each
// operation).
const (
	ErrAccessDenied         = "AccessDeniedException"
	ErrNotFound             = "NotFoundException"
	ErrDisabled             = "DisabledException"
	ErrInvalidState         = "KMSInvalidStateException"
	ErrInvalidCiphertext    = "InvalidCiphertextException"
	ErrIncorrectKey         = "IncorrectKeyException"
	ErrInvalidKeyUsage      = "InvalidKeyUsageException"
	ErrValidation           = "ValidationException"
	ErrUnsupportedOperation = "UnsupportedOperationException"
	ErrMalformedPolicy      = "MalformedPolicyDocumentException"
	ErrAlreadyExists        = "AlreadyExistsException"
	ErrInvalidAliasName     = "InvalidAliasNameException"
	ErrInvalidMarker        = "InvalidMarkerException"
	ErrInvalidSignature     = "KMSInvalidSignatureException"
	ErrInvalidMac           = "KMSInvalidMacException"
	ErrSerialization        = "SerializationException"
	ErrUnknownOperation     = "UnknownOperationException"
	ErrUnrecognizedClient   = "UnrecognizedClientException"
	ErrInvalidSignatureAuth = "InvalidSignatureException"
	ErrInternal             = "KMSInternalException"
)

// errorf returns an *Error of type typ.
func errorf(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...)}
}

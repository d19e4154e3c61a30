package nsm

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Transport limits, from Linux drivers/misc/nsm.c (NSM_REQUEST_MAX_SIZE,
// NSM_RESPONSE_MAX_SIZE) and QEMU hw/virtio/virtio-nsm.c.
const (
	// MaxRequestSize is the largest request the device accepts, in bytes.
	MaxRequestSize = 0x1000
	// MaxResponseSize is the size of the response buffer the driver posts.
	MaxResponseSize = 0x3000
)

// Device constants reported by DescribeNSM and used by the PCR bank.
const (
	// NumPCRs is the number of PCRs ("max_pcrs").
	NumPCRs = 32
	// PCRSize is the size of a SHA-384 PCR in bytes.
	PCRSize = 48
	// BootLockedPCRs is how many PCRs (0..15) are locked at enclave start.
	BootLockedPCRs = 16
	// RandomBytes is how many bytes a GetRandom response carries, as QEMU's
	// NSM_RND_BUF_SIZE.
	RandomBytes = 256
	// Digest is the PCR hash name reported by DescribeNSM.
	Digest = "SHA384"
	// VersionMajor, VersionMinor and VersionPatch are the reported module
	// version (1.0.0, as on Nitro and in QEMU).
	VersionMajor = 1
	VersionMinor = 0
	VersionPatch = 0
)

// ErrorCode is an NSM error, the ErrorCode enum of aws-nitro-enclaves-nsm-api
// src/api/mod.rs; on the wire it is the variant name as a CBOR text string
// inside {"Error": ...}.
type ErrorCode string

// The error codes. Success and InvalidResponse are never sent by the
// device: the first is the absence of an error, the second is what client
// libraries report when they cannot decode a response.
const (
	Success          ErrorCode = "Success"
	InvalidArgument  ErrorCode = "InvalidArgument"
	InvalidIndex     ErrorCode = "InvalidIndex"
	InvalidResponse  ErrorCode = "InvalidResponse"
	ReadOnlyIndex    ErrorCode = "ReadOnlyIndex"
	InvalidOperation ErrorCode = "InvalidOperation"
	BufferTooSmall   ErrorCode = "BufferTooSmall"
	InputTooLarge    ErrorCode = "InputTooLarge"
	InternalError    ErrorCode = "InternalError"
)

// Error implements error.
func (e ErrorCode) Error() string { return "nsm: " + string(e) }

// Request names, the variant names of nsm-api's Request enum.
const (
	reqDescribePCR = "DescribePCR"
	reqExtendPCR   = "ExtendPCR"
	reqLockPCR     = "LockPCR"
	reqLockPCRs    = "LockPCRs"
	reqDescribeNSM = "DescribeNSM"
	reqAttestation = "Attestation"
	reqGetRandom   = "GetRandom"
)

// Request is a decoded NSM request. Name says which variant it is; the
// other fields are set as that variant has them.
type Request struct {
	Name  string // e.g. "DescribePCR"
	Index uint16 // DescribePCR, ExtendPCR, LockPCR: the PCR; LockPCRs: the range
	Data  []byte // ExtendPCR

	// Attestation; nil means absent or null (Rust None).
	UserData, Nonce, PublicKey []byte
}

// decMode decodes untrusted requests. serde_cbor rejects duplicate struct
// fields, so do we.
func decMode() (cbor.DecMode, error) {
	return cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  16,
		MaxArrayElements: MaxRequestSize,
		MaxMapPairs:      MaxRequestSize,
	}.DecMode()
}

// CBOR major types (RFC 8949 §3.1) of the first byte of an item.
const (
	majorBytes = 2
	majorText  = 3
	majorMap   = 5
)

// nullByte is CBOR null (RFC 8949 §3.3).
const nullByte = 0xf6

// DecodeRequest decodes a raw request as serde_cbor encodes nsm-api's
// Request enum: unit variants as text strings, the others as one-entry maps
// from the variant name to a map of fields. Errors are ErrorCode values:
// InputTooLarge above MaxRequestSize, InvalidOperation for bytes that are not
// one well-formed CBOR item naming a known request, InvalidArgument for a
// known request with missing or mistyped fields.
func DecodeRequest(b []byte) (*Request, error) {
	dm, err := decMode()
	if err != nil {
		return nil, fmt.Errorf("nsm: %w", err)
	}
	return decodeRequest(dm, b)
}

// decodeRequest is DecodeRequest with a prepared decoding mode.
func decodeRequest(dm cbor.DecMode, b []byte) (*Request, error) {
	if len(b) > MaxRequestSize {
		return nil, InputTooLarge
	}
	if len(b) == 0 || dm.Wellformed(b) != nil {
		return nil, InvalidOperation
	}
	switch b[0] >> 5 {
	case majorText:
		var name string
		if dm.Unmarshal(b, &name) != nil {
			return nil, InvalidOperation
		}
		switch name {
		case reqDescribeNSM, reqGetRandom:
			return &Request{Name: name}, nil
		}
		return nil, InvalidOperation
	case majorMap:
		var top map[string]cbor.RawMessage
		if dm.Unmarshal(b, &top) != nil || len(top) != 1 {
			return nil, InvalidOperation
		}
		for name, raw := range top {
			return decodeArgs(dm, name, raw)
		}
	}
	return nil, InvalidOperation
}

func decodeArgs(dm cbor.DecMode, name string, raw cbor.RawMessage) (*Request, error) {
	var fieldsNeeded []string
	switch name {
	case reqDescribePCR, reqLockPCR:
		fieldsNeeded = []string{"index"}
	case reqExtendPCR:
		fieldsNeeded = []string{"index", "data"}
	case reqLockPCRs:
		fieldsNeeded = []string{"range"}
	case reqAttestation:
	default:
		return nil, InvalidOperation
	}
	if len(raw) == 0 || raw[0]>>5 != majorMap {
		return nil, InvalidArgument
	}
	var f map[string]cbor.RawMessage
	if dm.Unmarshal(raw, &f) != nil {
		return nil, InvalidArgument
	}
	for _, k := range fieldsNeeded {
		if _, ok := f[k]; !ok {
			return nil, InvalidArgument
		}
	}
	r := &Request{Name: name}
	var err error
	switch name {
	case reqDescribePCR, reqLockPCR:
		err = decodeUint16(dm, f["index"], &r.Index)
	case reqLockPCRs:
		err = decodeUint16(dm, f["range"], &r.Index)
	case reqExtendPCR:
		if err = decodeUint16(dm, f["index"], &r.Index); err == nil {
			r.Data, err = decodeBytes(dm, f["data"])
			if err == nil && r.Data == nil {
				err = InvalidArgument // data is not optional
			}
		}
	case reqAttestation:
		if r.UserData, err = decodeBytes(dm, f["user_data"]); err != nil {
			return nil, err
		}
		if r.Nonce, err = decodeBytes(dm, f["nonce"]); err != nil {
			return nil, err
		}
		r.PublicKey, err = decodeBytes(dm, f["public_key"])
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// decodeUint16 decodes an unsigned integer that fits in u16, as serde does
// for nsm-api's u16 fields.
func decodeUint16(dm cbor.DecMode, raw cbor.RawMessage, v *uint16) error {
	if len(raw) == 0 || raw[0]>>5 != 0 {
		return InvalidArgument
	}
	if dm.Unmarshal(raw, v) != nil {
		return InvalidArgument
	}
	return nil
}

// decodeBytes decodes an optional byte field: absent or null gives nil, a
// byte string or (as QEMU and serde_bytes accept) a text string gives its
// bytes, never nil.
func decodeBytes(dm cbor.DecMode, raw cbor.RawMessage) ([]byte, error) {
	if len(raw) == 0 || (len(raw) == 1 && raw[0] == nullByte) {
		return nil, nil
	}
	switch raw[0] >> 5 {
	case majorBytes:
		var b []byte
		if dm.Unmarshal(raw, &b) != nil {
			return nil, InvalidArgument
		}
		if b == nil {
			b = []byte{}
		}
		return b, nil
	case majorText:
		var s string
		if dm.Unmarshal(raw, &s) != nil {
			return nil, InvalidArgument
		}
		return []byte(s), nil
	}
	return nil, InvalidArgument
}

// Responses, shaped as serde_cbor encodes nsm-api's Response enum: struct
// fields in declaration order.
type (
	describePCRResp struct {
		Lock bool   `cbor:"lock"`
		Data []byte `cbor:"data"`
	}
	extendPCRResp struct {
		Data []byte `cbor:"data"`
	}
	describeNSMResp struct {
		VersionMajor uint16   `cbor:"version_major"`
		VersionMinor uint16   `cbor:"version_minor"`
		VersionPatch uint16   `cbor:"version_patch"`
		ModuleID     string   `cbor:"module_id"`
		MaxPCRs      uint16   `cbor:"max_pcrs"`
		LockedPCRs   []uint16 `cbor:"locked_pcrs"`
		Digest       string   `cbor:"digest"`
	}
	attestationResp struct {
		Document []byte `cbor:"document"`
	}
	getRandomResp struct {
		Random []byte `cbor:"random"`
	}
)

// encodeResponse encodes a response variant: a text string for unit
// variants (body nil), else a one-entry map {name: body}.
func encodeResponse(name string, body any) ([]byte, error) {
	if body == nil {
		return cbor.Marshal(name)
	}
	return cbor.Marshal(map[string]any{name: body})
}

// encodeError encodes {"Error": code}.
func encodeError(code ErrorCode) []byte {
	// "Error" and every code are short text strings: A1 65 'Error' 6x/7x code.
	b := []byte{0xa1, 0x65, 'E', 'r', 'r', 'o', 'r'}
	b = append(b, 0x60|byte(len(code)))
	return append(b, code...)
}

// asCode maps an error to the code the device reports.
func asCode(err error) ErrorCode {
	var c ErrorCode
	if errors.As(err, &c) {
		return c
	}
	return InternalError
}

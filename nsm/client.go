package nsm

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// EncodeRequest encodes r as client libraries do (serde_cbor's externally
// tagged enum, optional Attestation fields as null), for tools and tests
// that drive a Module the way a guest would.
func EncodeRequest(r *Request) ([]byte, error) {
	var v any
	switch r.Name {
	case reqDescribeNSM, reqGetRandom:
		v = r.Name
	case reqDescribePCR, reqLockPCR:
		v = map[string]any{r.Name: struct {
			Index uint16 `cbor:"index"`
		}{r.Index}}
	case reqLockPCRs:
		v = map[string]any{r.Name: struct {
			Range uint16 `cbor:"range"`
		}{r.Index}}
	case reqExtendPCR:
		v = map[string]any{r.Name: struct {
			Index uint16 `cbor:"index"`
			Data  []byte `cbor:"data"`
		}{r.Index, nonNil(r.Data)}}
	case reqAttestation:
		v = map[string]any{r.Name: struct {
			UserData  []byte `cbor:"user_data"`
			Nonce     []byte `cbor:"nonce"`
			PublicKey []byte `cbor:"public_key"`
		}{r.UserData, r.Nonce, r.PublicKey}}
	default:
		return nil, fmt.Errorf("nsm: unknown request %q", r.Name)
	}
	b, err := cbor.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("nsm: encode %s request: %w", r.Name, err)
	}
	return b, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// AttestationRequest returns an Attestation request; nil fields are null.
func AttestationRequest(userData, nonce, publicKey []byte) *Request {
	return &Request{Name: reqAttestation, UserData: userData, Nonce: nonce, PublicKey: publicKey}
}

// AttestationDocument extracts the document from an encoded Attestation
// response. An error response yields its ErrorCode.
func AttestationDocument(resp []byte) ([]byte, error) {
	var r struct {
		Attestation *attestationResp `cbor:"Attestation"`
		Error       ErrorCode        `cbor:"Error"`
	}
	if err := cbor.Unmarshal(resp, &r); err != nil {
		return nil, fmt.Errorf("nsm: decode response: %w", err)
	}
	if r.Error != "" {
		return nil, r.Error
	}
	if r.Attestation == nil || len(r.Attestation.Document) == 0 {
		return nil, fmt.Errorf("nsm: response %x is not an attestation", resp)
	}
	return r.Attestation.Document, nil
}

package nsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// TestEncodeRequest checks our client-side encoder against hf/nsm's bytes.
func TestEncodeRequest(t *testing.T) {
	tests := []struct {
		ours   *Request
		theirs request.Request
	}{
		{&Request{Name: "DescribePCR", Index: 3}, &request.DescribePCR{Index: 3}},
		{&Request{Name: "ExtendPCR", Index: 16, Data: []byte("x")}, &request.ExtendPCR{Index: 16, Data: []byte("x")}},
		{&Request{Name: "LockPCR", Index: 17}, &request.LockPCR{Index: 17}},
		{&Request{Name: "LockPCRs", Index: 32}, &request.LockPCRs{Range: 32}},
		{&Request{Name: "DescribeNSM"}, &request.DescribeNSM{}},
		{&Request{Name: "GetRandom"}, &request.GetRandom{}},
		{AttestationRequest(nil, []byte("n"), nil), &request.Attestation{Nonce: []byte("n")}},
	}
	for _, tt := range tests {
		got, err := EncodeRequest(tt.ours)
		if err != nil {
			t.Fatal(err)
		}
		want, err := cbor.Marshal(tt.theirs.Encoded())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %x, want %x", tt.ours.Name, got, want)
		}
		back, err := DecodeRequest(got)
		if err != nil || back.Name != tt.ours.Name || back.Index != tt.ours.Index {
			t.Errorf("%s: round trip got %+v, %v", tt.ours.Name, back, err)
		}
	}
	if _, err := EncodeRequest(&Request{Name: "Bogus"}); err == nil {
		t.Error("unknown request: got nil error, want one")
	}
}

func TestAttestationDocumentErrors(t *testing.T) {
	tests := []struct {
		name string
		resp []byte
		want error
	}{
		{"error response", encodeError(InputTooLarge), InputTooLarge},
		{"not CBOR", []byte{0xff}, nil},
		{"other response", []byte("\x67LockPCR"), nil},
	}
	for _, tt := range tests {
		_, err := AttestationDocument(tt.resp)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestErrorCodeNames checks our code names against hf/nsm's (and through it
// nsm-api's ErrorCode enum). InvalidResponse is never sent by the device:
// clients report it when they cannot decode a response, so the test only
// checks its name.
func TestErrorCodeNames(t *testing.T) {
	tests := []struct {
		ours   ErrorCode
		theirs response.ErrorCode
	}{
		{Success, response.ECSuccess},
		{InvalidArgument, response.ECInvalidArgument},
		{InvalidResponse, response.ECInvalidResponse},
		{ReadOnlyIndex, response.ECReadOnlyIndex},
		{InvalidOperation, response.ECInvalidOperation},
		{BufferTooSmall, response.ECBufferTooSmall},
		{InputTooLarge, response.ECInputTooLarge},
		{InternalError, response.ECInternalError},
		{InvalidIndex, "InvalidIndex"}, // missing from hf/nsm, present in nsm-api
	}
	for _, tt := range tests {
		if string(tt.ours) != string(tt.theirs) {
			t.Errorf("got %q, want %q", tt.ours, tt.theirs)
		}
		if got := encodeError(tt.ours); got[7] != 0x60|byte(len(tt.ours)) {
			t.Errorf("%s: got head %x, want text of %d bytes", tt.ours, got[7], len(tt.ours))
		}
	}
}

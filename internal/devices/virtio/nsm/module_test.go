package nsm_test

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"

	libnsm "github.com/nitrovm/nitrovm/nsm"

	"github.com/nitrovm/nitrovm/internal/devices/devicetest"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/nsm"
)

// The nsm library's Module is the production Processor.
var _ nsm.Processor = (*libnsm.Module)(nil)

// sendLinux sends req as github.com/hf/nsm encodes it, framed as Linux's
// nsm driver frames it, and decodes the answer with hf/nsm.
func sendLinux(t *testing.T, d *devicetest.Driver, req request.Request) response.Response {
	t.Helper()
	b, err := cbor.Marshal(req.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(0, [][]byte{b}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(0, nil, []uint32{nsm.ResponseMaxBytes}); err != nil {
		t.Fatal(err)
	}
	d.Kick(0)
	u, err := d.WaitUsed(0, 2, timeout)
	if err != nil {
		t.Fatal(err)
	}
	var res response.Response
	if err := cbor.Unmarshal(u[1].Data, &res); err != nil {
		t.Fatalf("decode %x: %v", u[1].Data, err)
	}
	return res
}

func TestWithModule(t *testing.T) {
	mod, err := libnsm.New(libnsm.Config{ModuleID: "i-0000000000000000-enc0", LockedPCRs: 16})
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := setup(t, mod)
	res := sendLinux(t, d, &request.DescribeNSM{})
	if res.DescribeNSM == nil || res.DescribeNSM.MaxPCRs != 32 {
		t.Fatalf("got %+v, want DescribeNSM with 32 PCRs", res)
	}
	res = sendLinux(t, d, &request.ExtendPCR{Index: 16, Data: []byte("x")})
	if res.ExtendPCR == nil || len(res.ExtendPCR.Data) != 48 {
		t.Fatalf("got %+v, want ExtendPCR", res)
	}
	res = sendLinux(t, d, &request.ExtendPCR{Index: 0, Data: []byte("x")})
	if res.Error != response.ECReadOnlyIndex {
		t.Fatalf("got %+v, want ReadOnlyIndex", res)
	}
	res = sendLinux(t, d, &request.Attestation{Nonce: []byte("n"), UserData: make([]byte, 1024), PublicKey: make([]byte, 1024)})
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		t.Fatalf("got %+v, want a document", res)
	}
	res = sendLinux(t, d, &request.GetRandom{})
	if res.GetRandom == nil || len(res.GetRandom.Random) == 0 {
		t.Fatalf("got %+v, want random bytes", res)
	}
}

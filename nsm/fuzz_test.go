package nsm

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// FuzzDecodeRequest feeds arbitrary bytes to the request decoder and, for
// what it accepts, to the request handler, without Process's recover, so a
// panic anywhere fails the fuzzer. Every answer must fit the response buffer
// and decode with a real client library.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []request.Request{
		&request.DescribePCR{Index: 0}, &request.DescribePCR{Index: 31}, &request.DescribePCR{Index: 32},
		&request.ExtendPCR{Index: 16, Data: []byte("abc")}, &request.ExtendPCR{Index: 0, Data: nil},
		&request.LockPCR{Index: 17}, &request.LockPCRs{Range: 32}, &request.LockPCRs{Range: 33},
		&request.DescribeNSM{}, &request.GetRandom{},
		&request.Attestation{}, &request.Attestation{UserData: []byte("u"), Nonce: []byte("n"), PublicKey: []byte("p")},
	} {
		b, err := cbor.Marshal(r.Encoded())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "\xff", "\xa1", "\x9f\xff", "\xa1\x69ExtendPCR\xa2\x65index\x10\x64data\x63abc",
		"\xa1\x6bAttestation\xa1\x65nonce\xf6", "\xbf\x69GetRandom\xf6\xff", "\xc6\x69GetRandom", "\xa1\x64data\x5f\x41a\xff"} {
		f.Add([]byte(s))
	}
	m := newEnclave(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		var out []byte
		if err != nil {
			if _, ok := err.(ErrorCode); !ok {
				t.Fatalf("DecodeRequest error %v is not an ErrorCode", err)
			}
			out = encodeError(asCode(err))
		} else if out, err = m.Do(req); err != nil {
			out = encodeError(asCode(err))
		}
		if len(out) == 0 || len(out) > MaxResponseSize {
			t.Fatalf("response of %d bytes", len(out))
		}
		var res response.Response
		if err := cbor.Unmarshal(out, &res); err != nil {
			t.Fatalf("hf/nsm cannot decode %x: %v", out, err)
		}
		if got := m.Process(data); len(got) == 0 || (req != nil && req.Name != reqGetRandom && req.Name != reqAttestation && !bytes.HasPrefix(got, []byte{0xa1}) && !bytes.HasPrefix(got, []byte{0x67}) && !bytes.HasPrefix(got, []byte{0x68})) {
			t.Fatalf("Process: got %x", got)
		}
	})
}

package nsm

import (
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
)

func benchRequest(b *testing.B, r request.Request) {
	m := newEnclave(b, false)
	req, err := cbor.Marshal(r.Encoded())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if out := m.Process(req); len(out) == 0 || out[1] == 0x65 && out[2] == 'E' {
			b.Fatalf("error response %x", out)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkDescribePCR measures DescribePCR requests per second.
func BenchmarkDescribePCR(b *testing.B) { benchRequest(b, &request.DescribePCR{Index: 0}) }

// BenchmarkAttestation measures signed attestation documents per second.
func BenchmarkAttestation(b *testing.B) {
	benchRequest(b, &request.Attestation{Nonce: make([]byte, 32), UserData: make([]byte, 64)})
}

// BenchmarkGetRandom measures GetRandom requests per second.
func BenchmarkGetRandom(b *testing.B) { benchRequest(b, &request.GetRandom{}) }

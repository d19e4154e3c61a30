package attestation

import (
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to Parse and Verify; neither may panic,
// and whatever Parse accepts must re-encode.
func FuzzParse(f *testing.F) {
	fx := newFixture(f, "fuzz")
	f.Add(fx.raw)
	f.Add(append([]byte{0xd2}, fx.raw...))
	f.Add([]byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x41, 0xa0, 0x40})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err == nil {
			if _, err := d.Payload(); err != nil {
				t.Fatalf("parsed document does not re-encode: %v", err)
			}
		}
		_, _ = Verify(data, VerifyOptions{Roots: fx.pool, CurrentTime: time.Unix(0, 0)})
	})
}

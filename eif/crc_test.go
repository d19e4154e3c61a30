package eif

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, la := range []int{0, 1, 7, 544, 1000} {
		for _, lb := range []int{0, 1, 12, 13, 4096, 100003} {
			a := make([]byte, la)
			b := make([]byte, lb)
			for i := range a {
				a[i] = byte(rng.Uint32())
			}
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			want := crc32.ChecksumIEEE(append(append([]byte{}, a...), b...))
			got := crcCombine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), uint64(lb))
			if got != want {
				t.Errorf("crcCombine(len %d, len %d): got %#x, want %#x", la, lb, got, want)
			}
		}
	}
}

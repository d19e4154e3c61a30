package eif

// CRC-32 (IEEE, reflected polynomial 0xEDB88320) combination: the CRC of
// A||B from crc(A), crc(B) and len(B), by multiplying crc(A) by x^(8*len(B))
// modulo the CRC polynomial (the method of zlib's crc32_combine). Build needs
// it because the header, which comes first in the CRC, is only known after
// the sections have been read.

// crcPoly is the reflected IEEE CRC-32 polynomial.
const crcPoly = 0xedb88320

// crcMulModP multiplies a and b as polynomials over GF(2) modulo crcPoly, in
// the reflected bit order (bit 31 is x^0).
func crcMulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// crcXPow8N returns x^(8n) modulo crcPoly, by squaring.
func crcXPow8N(n uint64) uint32 {
	p := uint32(1) << 31  // x^0
	sq := uint32(1) << 23 // x^8
	for ; n != 0; n >>= 1 {
		if n&1 != 0 {
			p = crcMulModP(sq, p)
		}
		sq = crcMulModP(sq, sq)
	}
	return p
}

// crcCombine returns the CRC-32 of A||B given crcA = crc(A), crcB = crc(B)
// and lenB = len(B).
func crcCombine(crcA, crcB uint32, lenB uint64) uint32 {
	return crcMulModP(crcXPow8N(lenB), crcA) ^ crcB
}

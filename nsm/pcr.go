package nsm

import (
	"crypto/sha512"
	"sync"
)

// Bank is the NSM's bank of NumPCRs SHA-384 PCRs. PCRs start as 48 zero
// bytes and unlocked. Extending replaces a PCR with SHA384(PCR || data);
// locked PCRs are read-only. It is safe for concurrent use.
type Bank struct {
	mu     sync.Mutex
	values [NumPCRs][PCRSize]byte
	locked [NumPCRs]bool
}

// Extend extends PCR i with data and returns its new value. Errors:
// InvalidIndex for i >= NumPCRs, ReadOnlyIndex if it is locked.
func (b *Bank) Extend(i int, data []byte) ([]byte, error) {
	if i < 0 || i >= NumPCRs {
		return nil, InvalidIndex
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.locked[i] {
		return nil, ReadOnlyIndex
	}
	b.values[i] = Extend(b.values[i][:], data)
	v := b.values[i]
	return v[:], nil
}

// Set sets PCR i to value (PCRSize bytes), as the platform does at boot with
// measurements it computed. Errors as Extend, plus InvalidArgument for a
// value of the wrong size.
func (b *Bank) Set(i int, value []byte) error {
	if i < 0 || i >= NumPCRs {
		return InvalidIndex
	}
	if len(value) != PCRSize {
		return InvalidArgument
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.locked[i] {
		return ReadOnlyIndex
	}
	copy(b.values[i][:], value)
	return nil
}

// Describe returns PCR i's value and whether it is locked. Error:
// InvalidIndex for i >= NumPCRs.
func (b *Bank) Describe(i int) (value []byte, locked bool, err error) {
	if i < 0 || i >= NumPCRs {
		return nil, false, InvalidIndex
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.values[i]
	return v[:], b.locked[i], nil
}

// Lock locks PCR i. Errors: InvalidIndex for i >= NumPCRs, ReadOnlyIndex if
// it is already locked (as QEMU and AWS's nsm-check expect for PCRs 0..15).
func (b *Bank) Lock(i int) error {
	if i < 0 || i >= NumPCRs {
		return InvalidIndex
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.locked[i] {
		return ReadOnlyIndex
	}
	b.locked[i] = true
	return nil
}

// LockRange locks PCRs [0, n); already locked ones stay locked. Error:
// InvalidIndex for n > NumPCRs.
func (b *Bank) LockRange(n int) error {
	if n < 0 || n > NumPCRs {
		return InvalidIndex
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range n {
		b.locked[i] = true
	}
	return nil
}

// Locked returns the indices of the locked PCRs in ascending order.
func (b *Bank) Locked() []uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []uint16
	for i, l := range b.locked {
		if l {
			out = append(out, uint16(i))
		}
	}
	return out
}

// Snapshot returns copies of all values and lock states, taken atomically.
func (b *Bank) Snapshot() (values [NumPCRs][PCRSize]byte, locked [NumPCRs]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.values, b.locked
}

// Extend returns SHA384(pcr || data), one PCR extension.
func Extend(pcr, data []byte) [PCRSize]byte {
	h := sha512.New384()
	h.Write(pcr)
	h.Write(data)
	var out [PCRSize]byte
	h.Sum(out[:0])
	return out
}

// Measure returns the value of a zero PCR extended once with data:
// SHA384(48 zero bytes || data). PCR3 (parent role ARN) and PCR4 (parent
// instance ID) are measured this way.
func Measure(data []byte) []byte {
	v := Extend(make([]byte, PCRSize), data)
	return v[:]
}

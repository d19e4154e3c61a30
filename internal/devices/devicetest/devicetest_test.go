package devicetest

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestIRQRecorder(t *testing.T) {
	var r IRQRecorder
	if r.WaitCount(1, 10*time.Millisecond) {
		t.Fatal("got WaitCount true with no triggers, want false")
	}
	go func() { _ = r.Trigger() }()
	if !r.WaitCount(1, 5*time.Second) {
		t.Fatal("got WaitCount false after a trigger, want true")
	}
	want := errors.New("irqfd closed")
	r.SetError(want)
	if err := r.Trigger(); err != want {
		t.Fatalf("got %v, want %v", err, want)
	}
	if got := r.Count(); got != 2 {
		t.Fatalf("got count %d, want 2", got)
	}
}

func TestNewMemory(t *testing.T) {
	m := NewMemory(4096)
	if m.Size() != 4096 {
		t.Fatalf("got size %d, want 4096", m.Size())
	}
	if _, err := m.Slice(4095, 2); err == nil {
		t.Fatal("got nil error past the end, want error")
	}
}

// fakeBus answers fixed register values.
type fakeBus map[uint64]uint32

func (b fakeBus) Read(off uint64, data []byte)  { binary.LittleEndian.PutUint32(data, b[off]) }
func (b fakeBus) Write(off uint64, data []byte) {}

func TestNewDriverProbeErrors(t *testing.T) {
	tests := []struct {
		name string
		bus  fakeBus
		opts DriverOptions
	}{
		{"bad magic", fakeBus{regMagic: 0x1234, regVersion: 2, regDeviceID: 1}, DriverOptions{}},
		{"legacy version", fakeBus{regMagic: mmioMagic, regVersion: 1, regDeviceID: 1}, DriverOptions{}},
		{"no device", fakeBus{regMagic: mmioMagic, regVersion: 2}, DriverOptions{}},
		{"features refused", fakeBus{regMagic: mmioMagic, regVersion: 2, regDeviceID: 1}, DriverOptions{}},
		{"no memory", fakeBus{regMagic: mmioMagic, regVersion: 2, regDeviceID: 1}, DriverOptions{MemBase: 1 << 30}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDriver(tc.bus, NewMemory(1<<20), tc.opts)
			if err == nil || d != nil {
				t.Fatalf("got %v %v, want an error", d, err)
			}
		})
	}
}

package memory

import (
	"errors"
	"testing"
)

func TestSliceBounds(t *testing.T) {
	g, err := New(Region{GPA: 0x1000, Data: make([]byte, 0x1000)}, Region{GPA: 0x10000, Data: make([]byte, 0x100)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		gpa, n uint64
		ok     bool
	}{
		{"first byte", 0x1000, 1, true},
		{"whole region", 0x1000, 0x1000, true},
		{"empty at end", 0x2000, 0, true},
		{"before region", 0xfff, 1, false},
		{"past end", 0x1fff, 2, false},
		{"spans gap", 0x1f00, 0x200, false},
		{"second region", 0x100f0, 0x10, true},
		{"overflow", ^uint64(0) - 1, 4, false},
		{"huge length", 0x1000, ^uint64(0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := g.Slice(tc.gpa, tc.n)
			if tc.ok {
				if err != nil || uint64(len(s)) != tc.n {
					t.Fatalf("got len %d err %v, want len %d", len(s), err, tc.n)
				}
				return
			}
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("got %v, want ErrOutOfRange", err)
			}
		})
	}
}

func TestOverlapRejected(t *testing.T) {
	_, err := New(Region{GPA: 0, Data: make([]byte, 0x2000)}, Region{GPA: 0x1000, Data: make([]byte, 0x10)})
	if err == nil {
		t.Fatal("got nil error, want overlap error")
	}
}

func TestMapReadWrite(t *testing.T) {
	g, err := Map([]Range{{GPA: 0, Size: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.PutUint32(0x100, 0xdeadbeef); err != nil {
		t.Fatal(err)
	}
	v, err := g.Uint32(0x100)
	if err != nil || v != 0xdeadbeef {
		t.Fatalf("got %#x %v, want 0xdeadbeef", v, err)
	}
	if g.Size() != 1<<20 {
		t.Fatalf("got size %d, want %d", g.Size(), 1<<20)
	}
}

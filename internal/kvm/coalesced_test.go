package kvm

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// ringEntry is one kvm_coalesced_mmio to lay into a test ring.
type ringEntry struct {
	addr uint64
	len  uint32
	pio  uint32
	data string
}

// testRing returns a 4 KiB ring page (170 entries, as on x86-64) with
// first, last and the given entries from index first on.
func testRing(first, last uint32, es ...ringEntry) []byte {
	page := make([]byte, 4096)
	le := binary.LittleEndian
	le.PutUint32(page[0:], first)
	le.PutUint32(page[4:], last)
	for i, e := range es {
		off := coalescedHeaderBytes + ((int(first)+i)%170)*coalescedEntryBytes
		le.PutUint64(page[off:], e.addr)
		le.PutUint32(page[off+8:], e.len)
		le.PutUint32(page[off+12:], e.pio)
		copy(page[off+16:off+24], e.data)
	}
	return page
}

func TestCoalescedRingDrain(t *testing.T) {
	tests := []struct {
		name      string
		page      []byte
		want      string // "addr:pio:data" per entry, space-separated
		wantN     int    // entries consumed
		wantFirst uint32
		wantErr   bool
	}{
		{"empty", testRing(5, 5), "", 0, 5, false},
		{"two writes", testRing(0, 2, ringEntry{0x3f8, 1, 1, "A"}, ringEntry{0x3f8, 1, 1, "B"}), "0x3f8:true:A 0x3f8:true:B", 2, 2, false},
		{"wraps", testRing(169, 1, ringEntry{0x3f8, 1, 1, "y"}, ringEntry{0x3f9, 2, 1, "zz"}), "0x3f8:true:y 0x3f9:true:zz", 2, 1, false},
		{"bad lengths skipped", testRing(0, 3, ringEntry{0x3f8, 0, 1, ""}, ringEntry{0x3f8, 9, 1, "x"}, ringEntry{0xd0000000, 4, 0, "abcd"}), "0xd0000000:false:abcd", 3, 3, false},
		{"first out of range", testRing(170, 0), "", 0, 170, true},
		{"last out of range", testRing(0, 4000), "", 0, 0, true},
	}
	for _, tt := range tests {
		r, err := newCoalescedRing(tt.page)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		n, err := r.Drain(func(addr uint64, pio bool, data []byte) {
			got = append(got, fmt.Sprintf("%#x:%v:%s", addr, pio, data))
		})
		if (err != nil) != tt.wantErr || strings.Join(got, " ") != tt.want || n != tt.wantN {
			t.Errorf("%s: got %q, %d, %v; want %q, error %v", tt.name, got, n, err, tt.want, tt.wantErr)
		}
		if first := binary.LittleEndian.Uint32(tt.page); first != tt.wantFirst {
			t.Errorf("%s: first after drain %d, want %d", tt.name, first, tt.wantFirst)
		}
		if !tt.wantErr && r.Pending() {
			t.Errorf("%s: still pending after drain", tt.name)
		}
	}
	if _, err := newCoalescedRing(make([]byte, 16)); err == nil {
		t.Errorf("newCoalescedRing(16 bytes): got nil error")
	}
}

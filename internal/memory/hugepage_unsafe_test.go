package memory

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// smapsEntry returns the Size (KiB) and VmFlags of the mapping of
// /proc/self/smaps that starts at addr.
func smapsEntry(t *testing.T, addr uintptr) (sizeKiB int, flags string) {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	start := fmt.Sprintf("%x-", addr)
	in := false
	for _, l := range strings.Split(string(smaps), "\n") {
		switch {
		case strings.HasPrefix(l, start):
			in = true
		case in && strings.HasPrefix(l, "Size:"):
			fmt.Sscanf(strings.TrimPrefix(l, "Size:"), "%d", &sizeKiB)
		case in && strings.HasPrefix(l, "VmFlags:"):
			return sizeKiB, l
		}
	}
	t.Fatalf("no mapping starting at %s in /proc/self/smaps", start)
	return 0, ""
}

// TestMapHugePageAlignment checks that a region of at least 2 MiB starts at
// a host address congruent to its guest address modulo 2 MiB (what KVM needs
// to map it with 2 MiB pages), is marked "hg" (MADV_HUGEPAGE) where the
// kernel has transparent huge pages, keeps no extra mapped bytes around it,
// and is writable end to end; smaller regions are plain mappings.
func TestMapHugePageAlignment(t *testing.T) {
	_, thpErr := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled")
	for _, tc := range []struct {
		name string
		r    Range
		huge bool
	}{
		{"aligned GPA", Range{GPA: 0, Size: 8 << 20}, true},
		{"GPA 4 GiB", Range{GPA: 1 << 32, Size: 6 << 20}, true},
		{"unaligned GPA", Range{GPA: 0x10_1000, Size: 4<<20 + 8192}, true},
		{"exactly one huge page", Range{GPA: 2 << 20, Size: 2 << 20}, true},
		{"below a huge page", Range{GPA: 0, Size: 1 << 20}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Map([]Range{tc.r})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := g.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			b, err := g.Slice(tc.r.GPA, tc.r.Size)
			if err != nil {
				t.Fatal(err)
			}
			b[0], b[len(b)-1] = 1, 2
			addr := uintptr(unsafe.Pointer(&b[0]))
			if tc.huge && uint64(addr)%hugePageSize != tc.r.GPA%hugePageSize {
				t.Errorf("host address %#x, guest address %#x: not congruent modulo %#x", addr, tc.r.GPA, hugePageSize)
			}
			size, flags := smapsEntry(t, addr)
			if uint64(size)<<10 != tc.r.Size {
				// A neighbouring mapping with the same flags can merge
				// with it; only a smaller one is an error.
				if uint64(size)<<10 < tc.r.Size {
					t.Errorf("mapping at %#x is %d KiB, want %d", addr, size, tc.r.Size>>10)
				}
			}
			if got := strings.Contains(flags, " hg"); thpErr == nil && got != tc.huge {
				t.Errorf("%s: hg (MADV_HUGEPAGE) is %v, want %v", flags, got, tc.huge)
			}
		})
	}
}

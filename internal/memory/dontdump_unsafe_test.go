package memory

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestMapDontDump checks that guest RAM is flagged "dd" (MADV_DONTDUMP)
// in /proc/self/smaps, so it never lands in a core file.
func TestMapDontDump(t *testing.T) {
	g, err := Map([]Range{{GPA: 0, Size: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, err := g.Slice(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0])))
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	in := false
	for _, l := range strings.Split(string(smaps), "\n") {
		if strings.HasPrefix(l, start) {
			in = true
		}
		if in && strings.HasPrefix(l, "VmFlags:") {
			if !strings.Contains(l, " dd") {
				t.Fatalf("guest RAM mapping %s: %s, want dd", start, l)
			}
			return
		}
	}
	t.Fatalf("no mapping starting at %s in /proc/self/smaps", start)
}

package enclave

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseExePages(t *testing.T) {
	const smaps = `00400000-00a4a000 r-xp 00000000 fe:00 123 /opt/nitro vm
Size:               6440 kB
Rss:                4264 kB
Anonymous:             0 kB
00a4a000-01129000 r--p 0064a000 fe:00 123 /opt/nitro vm
Anonymous:             8 kB
01129000-011a1000 rw-p 00d29000 fe:00 123 /opt/nitro vm
Anonymous:             0 kB
011a1000-0340c000 rw-p 00000000 00:00 0
Anonymous:           104 kB
7f0000000000-7f0000001000 r--p 00000000 fe:00 9 /opt/other
Anonymous:             0 kB
7f0000001000-7f0000002000 r--p 00001000 fe:00 123 /opt/nitro vm
VmFlags: rd mr mw me
Anonymous:             0 kB
`
	got, err := parseExePages(strings.NewReader(smaps), "/opt/nitro vm")
	if err != nil {
		t.Fatal(err)
	}
	want := exePages{{0x400000, 0xa4a000}, {0x7f0000001000, 0x7f0000002000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, wanted %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("range %d: got %x, wanted %x", i, got[i], want[i])
		}
	}
}

// exeRSSKiB sums the Rss of the given ranges in /proc/self/smaps.
func exeRSSKiB(t *testing.T, p exePages) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			lo, _, _ := strings.Cut(fields[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			in = false
			for _, r := range p {
				if uintptr(a) == r.start {
					in = true
				}
			}
			continue
		}
		if in && len(fields) > 1 && fields[0] == "Rss:" {
			n, _ := strconv.Atoi(fields[1])
			total += n
		}
	}
	return total
}

// TestExePagesDrop drops this test binary's own code and read-only data
// while it runs: the process carries on (the pages come back from the page
// cache) with fewer of them mapped.
func TestExePagesDrop(t *testing.T) {
	p, err := readExePages()
	if err != nil {
		t.Skipf("no /proc/self: %v", err)
	}
	if len(p) == 0 {
		t.Fatal("found no read-only mapping of the executable")
	}
	before := exeRSSKiB(t, p)
	if err := releaseMemory(p); err != nil {
		t.Fatal(err)
	}
	after := exeRSSKiB(t, p)
	t.Logf("executable's read-only mappings: %d KiB resident before, %d KiB after", before, after)
	if after >= before {
		t.Errorf("got %d KiB resident after the drop, wanted less than the %d KiB before", after, before)
	}
}

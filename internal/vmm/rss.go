package vmm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// vmmRSSKiB returns the resident memory of this process from
// /proc/self/smaps, excluding mappings whose size equals one of
// guestBytes (the guest RAM regions, which the guest fills as it pleases).
func vmmRSSKiB(guestBytes []uint64) (uint64, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("vmm: measure RSS: %w", err)
	}
	defer f.Close()
	return sumRSSKiB(f, guestBytes)
}

// sumRSSKiB sums the "Rss:" lines of an smaps listing, skipping mappings
// whose size is in exclude.
func sumRSSKiB(r io.Reader, exclude []uint64) (uint64, error) {
	var total uint64
	skip := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if i := bytes.IndexByte(line, ' '); i > 0 && bytes.IndexByte(line[:i], '-') > 0 && !bytes.HasSuffix(line[:i], []byte(":")) {
			lo, hi, _ := strings.Cut(string(line[:i]), "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			skip = false
			for _, n := range exclude {
				if b-a == n {
					skip = true
				}
			}
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("Rss:")); ok && !skip {
			f := strings.Fields(string(v))
			if len(f) > 0 {
				n, err := strconv.ParseUint(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("vmm: parse smaps Rss %q: %w", v, err)
				}
				total += n
			}
		}
	}
	return total, sc.Err()
}

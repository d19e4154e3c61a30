package enclave

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// pageRange is one mapping of the process's address space, [start, end).
type pageRange struct {
	start, end uintptr
}

// parseRange parses a mapping's "start-end" field of /proc/PID/maps or
// smaps (hexadecimal); ok is false unless it is well formed and end > start.
func parseRange(field []byte) (r pageRange, ok bool) {
	lo, hi, found := bytes.Cut(field, []byte("-"))
	a, err1 := strconv.ParseUint(string(lo), 16, 64)
	b, err2 := strconv.ParseUint(string(hi), 16, 64)
	if !found || err1 != nil || err2 != nil || b <= a {
		return pageRange{}, false
	}
	return pageRange{start: uintptr(a), end: uintptr(b)}, true
}

// exePages are the read-only, private mappings of the running executable
// (its code and read-only data) that hold no page of their own: every
// resident page is the file's, from the page cache.
//
// The supervisor runs the whole nitrovm binary, and starting it (package
// initialisation, the command line, reading and measuring the EIF,
// building the VM) touches code and tables it never uses again. The
// kernel maps file pages around each fault, so those touches leave
// several MiB of the binary mapped for the enclave's lifetime, counted in
// its RSS (and PSS). Dropping the mappings (MADV_DONTNEED) loses nothing:
// the pages stay in the page cache, and whatever the supervisor still
// runs faults back in.
type exePages []pageRange

// readExePages lists the executable's droppable mappings from
// /proc/self/smaps. It must run before the process is confined (the jail
// hides /proc).
func readExePages() (exePages, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("find the executable: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	defer f.Close()
	return parseExePages(f, exe)
}

// parseExePages returns the mappings of the smaps listing r that map the
// file exe privately and read-only ("r-xp", "r--p") and have no anonymous
// page (a relocated or debugger-patched page would be lost by a drop).
func parseExePages(r io.Reader, exe string) (exePages, error) {
	var out exePages
	var cur pageRange
	candidate := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if bytes.IndexByte(f[0], '-') >= 0 && !bytes.HasSuffix(f[0], []byte(":")) {
			r, ok := parseRange(f[0])
			if !ok || len(f) < 6 {
				candidate = false
				continue
			}
			perm := string(f[1])
			candidate = (perm == "r-xp" || perm == "r--p") && string(bytes.Join(f[5:], []byte(" "))) == exe
			cur = r
			continue
		}
		if !candidate || string(f[0]) != "Anonymous:" || len(f) < 2 {
			continue
		}
		if string(f[1]) == "0" {
			out = append(out, cur)
		}
		candidate = false
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	return out, nil
}

// drop unmaps the resident pages of every range (they are refetched from
// the page cache when next touched).
func (p exePages) drop() error {
	for _, r := range p {
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED)
		if errno != 0 {
			return fmt.Errorf("madvise %#x-%#x: %w", r.start, r.end, errno)
		}
	}
	return nil
}

// releaseMemory gives the operating system back what a long-lived
// supervisor no longer uses: the freed heap (debug.FreeOSMemory, now
// rather than at the scavenger's pace) and the executable's pages mapped
// while starting up.
func releaseMemory(exe exePages) error {
	debug.FreeOSMemory()
	return exe.drop()
}

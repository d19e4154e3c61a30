package enclave

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Transparent huge pages and the supervisor.
//
// On a host whose THP mode is "always", the first write to any 2 MiB-aligned
// stretch of an anonymous mapping can fault in a whole huge page. Package
// initialisation writes a few KiB here and there in the binary's .bss
// (go-runewidth, linked for the progress bars, has two 1.1 MB tables
// there): 2 MiB of RSS in every supervisor for data it never uses. Guest
// RAM is where huge pages pay (fewer nested page-table levels for the
// guest), so the supervisor starts with THP off and turns it back on for
// the guest only:
//
//   - startWithoutTHP starts it with PR_SET_THP_DISABLE, which a child
//     inherits across fork and execve (prctl(2));
//   - once running, allowTHPForGuest marks every writable mapping that
//     exists (the binary's data and .bss, the Go runtime's) MADV_NOHUGEPAGE,
//     so that khugepaged does not collapse them later either, and clears
//     PR_SET_THP_DISABLE before guest RAM is mapped. The Go heap is marked
//     by the runtime itself (GODEBUG=disablethp=1, see supervisorEnv).

// startWithoutTHP starts cmd with transparent huge pages disabled for the
// new process: the flag is set on this process for the duration of the
// start and put back as it was. Without the prctl (a kernel without THP)
// cmd starts as is.
func startWithoutTHP(cmd *exec.Cmd) error {
	prev, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0)
	if err != nil || prev != 0 {
		return cmd.Start()
	}
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		return cmd.Start()
	}
	defer unix.Prctl(unix.PR_SET_THP_DISABLE, 0, 0, 0, 0)
	return cmd.Start()
}

// allowTHPForGuest marks the process's writable private mappings
// MADV_NOHUGEPAGE and then allows transparent huge pages again, for the
// mappings made from now on (guest RAM). It must run before the jail hides
// /proc and before guest RAM is mapped.
func allowTHPForGuest() error {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return fmt.Errorf("read mappings: %w", err)
	}
	ranges, err := writableMappings(maps)
	if err != nil {
		return err
	}
	for _, r := range ranges {
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_NOHUGEPAGE)
		if errno != 0 {
			return fmt.Errorf("madvise(MADV_NOHUGEPAGE) %#x-%#x: %w", r.start, r.end, errno)
		}
	}
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_THP_DISABLE, 0): %w", err)
	}
	return nil
}

// writableMappings returns the private, writable mappings of a
// /proc/PID/maps listing, skipping the kernel's special ones ([vvar],
// [vdso], [vsyscall]).
func writableMappings(maps []byte) ([]pageRange, error) {
	var out []pageRange
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 5 {
			continue
		}
		r, ok := parseRange(f[0])
		if !ok {
			return nil, fmt.Errorf("read mappings: bad line %q", sc.Bytes())
		}
		perm := f[1]
		if len(perm) != 4 || perm[1] != 'w' || perm[3] != 'p' {
			continue
		}
		if len(f) >= 6 && bytes.HasPrefix(f[5], []byte("[v")) {
			continue
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	return out, nil
}

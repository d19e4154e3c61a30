package enclave

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/timerslack"
)

func TestWritableMappings(t *testing.T) {
	maps := `00400000-00d0a000 r-xp 00000000 00:1a 12 /bin/nitrovm
00d0a000-01a21000 r--p 0090a000 00:1a 12 /bin/nitrovm
01a21000-01a85000 rw-p 01621000 00:1a 12 /bin/nitrovm
01a85000-01cc9000 rw-p 00000000 00:00 0
c000000000-c004000000 rw-p 00000000 00:00 0
7f0000000000-7f0000100000 rw-s 00000000 00:01 5 /dev/zero (deleted)
7ffd3a1d2000-7ffd3a1f3000 rw-p 00000000 00:00 0                          [stack]
7ffd3a1f6000-7ffd3a1fa000 r--p 00000000 00:00 0                          [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`
	got, err := writableMappings([]byte(maps))
	if err != nil {
		t.Fatal(err)
	}
	want := []pageRange{{0x1a21000, 0x1a85000}, {0x1a85000, 0x1cc9000}, {0xc000000000, 0xc004000000}, {0x7ffd3a1d2000, 0x7ffd3a1f3000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %x, want %x", got, want)
	}
	for _, bad := range []string{"zz-01 rw-p 0 00:00 0\n", "02000-01000 rw-p 0 00:00 0\n", "01000 rw-p 0 00:00 0\n"} {
		if _, err := writableMappings([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestWritableMappingsSelf parses this process's own listing: its data
// and heap are writable private mappings.
func TestWritableMappingsSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	got, err := writableMappings(b)
	if err != nil || len(got) == 0 {
		t.Fatalf("got %d mappings, %v", len(got), err)
	}
}

// TestStartSupervisor checks what a supervisor started this way inherits:
// transparent huge pages disabled and the VMM's timer slack, and that the
// caller gets its THP setting back.
func TestStartSupervisor(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if _, err := os.Stat("/proc/self/timerslack_ns"); err != nil {
		t.Skip("no /proc/self/timerslack_ns")
	}
	var out bytes.Buffer
	cmd := exec.Command(sh, "-c", "cat /proc/self/timerslack_ns; grep '^THP_enabled' /proc/self/status")
	cmd.Stdout = &out
	if err := startSupervisor(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(out.String())
	if len(lines) < 1 || lines[0] != strconv.FormatInt(timerslack.VMM.Nanoseconds(), 10) {
		t.Errorf("child's timer slack and THP status: %q, want %d ns first", out.String(), timerslack.VMM.Nanoseconds())
	}
	if len(lines) == 3 && lines[2] != "0" {
		t.Errorf("child's THP_enabled = %s, want 0", lines[2])
	}
	if v, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); err == nil && v != 0 {
		t.Errorf("caller's PR_GET_THP_DISABLE = %d after the start, want 0", v)
	}
}

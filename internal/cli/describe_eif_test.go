package cli

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixEIFCRC recomputes an EIF's header CRC after a test mutation.
func fixEIFCRC(b []byte) {
	crc := crc32.ChecksumIEEE(b[:544])
	crc = crc32.Update(crc, crc32.IEEETable, b[548:])
	binary.BigEndian.PutUint32(b[544:], crc)
}

func TestDescribeEIFErrors(t *testing.T) {
	dir := t.TempDir()
	good := buildTestEIF(t, dir, 2, "good.eif")
	img, _ := os.ReadFile(good)
	secOff := func(i int) int { return int(binary.BigEndian.Uint64(img[28+8*i:])) }
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), img...)) }
	tests := []struct {
		name   string
		img    []byte
		want   string
		stdout bool // JSON still printed
	}{
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'Z'; return b }), "bad magic", false},
		{"old version", mutate(func(b []byte) []byte { b[5] = 1; return b }), "version 1 is not supported", false},
		{"bad flags", mutate(func(b []byte) []byte { b[7] = 0x80; return b }), "unknown header flags", false},
		{"truncated", img[:len(img)-100], "runs past the end of the file (", false},
		{"truncated header", img[:100], "shorter than the 548-byte EIF header", false},
		{"section size mismatch", mutate(func(b []byte) []byte { b[secOff(1)+11]++; return b }), "section header says", false},
		{"offset past EOF", mutate(func(b []byte) []byte { binary.BigEndian.PutUint64(b[28+8*3:], 1<<50); return b }), "(section 3)", false},
		{"huge size", mutate(func(b []byte) []byte { binary.BigEndian.PutUint64(b[28+256:], ^uint64(0)); return b }), "(section 0)", false},
		{"two kernels", mutate(func(b []byte) []byte { b[secOff(1)+1] = 1; return b }), "second kernel section", false},
		{"no kernel", mutate(func(b []byte) []byte { b[secOff(0)+1] = 3; return b }), "no kernel section", false},
		{"no ramdisk", mutate(func(b []byte) []byte { b[secOff(3)+1] = 1; b[secOff(4)+1] = 5; return b }), "second kernel section", false},
		{"33 sections", mutate(func(b []byte) []byte { b[27] = 33; return b }), "more than the 32", false},
		{"CRC mismatch", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }), "CRC-32 mismatch", true},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, "bad.eif")
		if err := os.WriteFile(p, tt.img, 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runEIFCmd(t, nil, "describe-eif", "--eif-path", p)
		if code != 35 || !strings.HasPrefix(stderr, "[ E35 ]") || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: got exit %d, stderr %q; want exit 35 and one line containing %q", tt.name, code, stderr, tt.want)
		}
		if (stdout != "") != tt.stdout {
			t.Errorf("%s: got stdout %q, want JSON printed: %v", tt.name, stdout, tt.stdout)
		}
		if tt.stdout && !strings.Contains(stdout, `"CheckCRC": false`) {
			t.Errorf("%s: got stdout %q, want CheckCRC false", tt.name, stdout)
		}
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing flag", []string{"describe-eif"}, 2, "--eif-path is required"},
		{"missing file", []string{"describe-eif", "--eif-path", filepath.Join(dir, "nope.eif")}, 35, "no such file"},
		{"directory", []string{"describe-eif", "--eif-path", dir}, 35, "not a regular file"},
	} {
		code, _, stderr := runEIFCmd(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: got exit %d, stderr %q, want exit %d containing %q", tt.name, code, stderr, tt.code, tt.want)
		}
	}
}

func TestDescribeEIFTestdata(t *testing.T) {
	files, _ := filepath.Glob("../../eif/testdata/*.eif")
	if len(files) == 0 {
		t.Skip("no eif/testdata")
	}
	for _, p := range files {
		code, stdout, stderr := runEIFCmd(t, nil, "describe-eif", "--eif-path", p)
		bad := strings.HasPrefix(filepath.Base(p), "bad-")
		if bad && (code != 35 || strings.Count(stderr, "\n") != 1) {
			t.Errorf("%s: got exit %d, stderr %q, want 35 and one line", p, code, stderr)
		}
		if !bad && (code != 0 || !strings.Contains(stdout, `"PCR0"`)) {
			t.Errorf("%s: got exit %d, stderr %q, want 0", p, code, stderr)
		}
	}
}

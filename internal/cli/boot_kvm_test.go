//go:build kvm

package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/eif"
)

// TestBootExitStatus boots tiny 64-bit guests (no Linux) on /dev/kvm, the
// seccomp filter off (boot runs in this test process, which it would keep), the
// host check skipped so that it runs on PVM too: go test -tags kvm.
func TestBootExitStatus(t *testing.T) {
	panicCode := append([]byte{
		0x48, 0x8d, 0x35, 0x0e, 0, 0, 0, 0x66, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0,
		0x74, 0x03, 0xee, 0xeb, 0xf8, 0xeb, 0xfe,
	}, "Kernel panic - not syncing: boom\n\x00"...)
	tests := []struct {
		name     string
		code     []byte
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"reboot", []byte{0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe}, 0, "", ""},
		{"panic", panicCode, 3, "Kernel panic - not syncing: boom\n", "nitrovm: guest panic: Kernel panic - not syncing: boom\n"},
	}
	for _, tt := range tests {
		le := binary.LittleEndian
		k := make([]byte, 5*512+0x200+len(tt.code))
		le.PutUint16(k[0x1fe:], 0xaa55)
		k[0x201] = 0x6a
		le.PutUint32(k[0x202:], 0x53726448)
		le.PutUint16(k[0x206:], 0x20f)
		le.PutUint16(k[0x236:], 1)
		copy(k[5*512+0x200:], tt.code)
		path := filepath.Join(t.TempDir(), "bzImage")
		if err := os.WriteFile(path, k, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"--kernel", path}, {"--eif-path", testEIF(t, k, eif.ArchX86_64)}} {
			var stdout, stderr bytes.Buffer
			env := Env{Stdout: &stdout, Stderr: &stderr, Getenv: skipHostCheck, InProcess: true}
			code := Run(context.Background(), append([]string{"nitrovm", "boot", "--seccomp-action", "off", "--memory", "64", "--cpu-count", "1"}, args...), env)
			if code != tt.wantCode || stdout.String() != tt.wantOut || !strings.HasSuffix(stderr.String(), tt.wantErr) {
				t.Errorf("%s %s: got %d %q %q, want %d %q %q", tt.name, args[0], code, stdout.String(), stderr.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		}
	}
}

// TestBootStats boots a guest that resets at once with --stats and checks
// the JSON object on stderr: the reason and KVM's exit counts.
func TestBootStats(t *testing.T) {
	le := binary.LittleEndian
	code := []byte{0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe} // out 0x64, 0xfe: i8042 reset.
	k := make([]byte, 5*512+0x200+len(code))
	le.PutUint16(k[0x1fe:], 0xaa55)
	k[0x201] = 0x6a
	le.PutUint32(k[0x202:], 0x53726448)
	le.PutUint16(k[0x206:], 0x20f)
	le.PutUint16(k[0x236:], 1)
	copy(k[5*512+0x200:], code)
	path := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(path, k, 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	env := Env{Stdout: io.Discard, Stderr: &stderr, Getenv: skipHostCheck, InProcess: true}
	if c := Run(context.Background(), []string{"nitrovm", "boot", "--seccomp-action", "off", "--stats", "--memory", "64", "--cpu-count", "1", "--kernel", path}, env); c != 0 {
		t.Fatalf("got exit status %d (%s), want 0", c, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	var got struct {
		Reason string `json:"reason"`
		KVM    *struct {
			Exits map[string]uint64 `json:"exits"`
		} `json:"kvm"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last stderr line %q: %v", lines[len(lines)-1], err)
	}
	if got.Reason != "reboot" {
		t.Errorf("got reason %q, want reboot", got.Reason)
	}
	if got.KVM == nil {
		t.Skip("kernel without KVM binary stats")
	}
	if got.KVM.Exits["exits"] < 1 {
		t.Errorf("got exits %v, want at least one exit (the OUT to the i8042)", got.KVM.Exits)
	}
}

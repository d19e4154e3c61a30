package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/eif"
)

// testEIF writes an EIF holding kernel and one small ramdisk for arch.
func testEIF(t *testing.T, kernel []byte, arch eif.Arch) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.eif")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = eif.Build(f, eif.BuildOptions{
		Kernel: bytes.NewReader(kernel), Cmdline: "console=ttyS0",
		Ramdisks: []eif.Blob{bytes.NewReader([]byte("ramdisk"))}, Name: "test", Arch: arch,
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// skipHostCheck is an Env.Getenv that skips the KVM host check.
func skipHostCheck(k string) string {
	if k == "NITROVM_SKIP_HOST_CHECK" {
		return "1"
	}
	return ""
}

func TestBootRefusesARM64(t *testing.T) {
	path := testEIF(t, []byte("not a kernel"), eif.ArchARM64)
	var stderr bytes.Buffer
	code := Run(context.Background(), []string{"nitrovm", "boot", "--eif-path", path}, Env{Stderr: &stderr, Getenv: skipHostCheck})
	if code != 1 || !strings.Contains(stderr.String(), "arm64 EIF") {
		t.Errorf("got %d %q, want 1 and a message about arm64", code, stderr.String())
	}
}

func TestParseMemoryMiB(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"512", 512, false}, {"512M", 512, false}, {"2G", 2048, false}, {"1g", 1024, false},
		{"0", 0, true}, {"-1", 0, true}, {"x", 0, true}, {"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseMemoryMiB(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseMemoryMiB(%q): got %d, %v, want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestBootUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
		vars map[string]string
	}{
		{[]string{"boot"}, "exactly one of --eif-path and --kernel", nil},
		{[]string{"boot", "--kernel", "k", "--eif-path", "e"}, "exactly one of", nil},
		{[]string{"boot", "--eif-path", "e", "--initrd", "i"}, "--initrd goes with --kernel", nil},
		{[]string{"boot", "--kernel", "k", "--memory", "lots"}, "--memory", nil},
		{[]string{"boot", "--kernel", "k", "--cpu-count", "0"}, "--cpu-count 0", nil},
		{[]string{"boot", "--kernel", "k"}, "NITROVM_VCPU_CPUS: invalid CPU list entry \"one\"", map[string]string{"NITROVM_VCPU_CPUS": "one"}},
		{[]string{"boot", "--kernel", "k"}, "NITROVM_VCPU_CPUS: invalid CPU list interval \"3-1\"", map[string]string{"NITROVM_VCPU_CPUS": "3-1"}},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"nitrovm"}, tt.args...), Env{Stderr: &stderr, Getenv: func(k string) string { return tt.vars[k] }})
		if code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: got %d %q, want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

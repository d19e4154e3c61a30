package nested

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeQEMU writes a shell script standing in for QEMU: each run prints the
// next of outputs.
func fakeQEMU(t *testing.T, dir string, outputs ...string) string {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("#!/bin/sh\nn=$(cat " + dir + "/count 2>/dev/null || echo 0)\necho $((n+1)) > " + dir + "/count\ncase $n in\n")
	for i, o := range outputs {
		sb.WriteString(strconv.Itoa(i) + ") printf '" + o + "' ;;\n")
	}
	sb.WriteString("esac\n")
	p := filepath.Join(dir, "qemu")
	if err := os.WriteFile(p, []byte(sb.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeL1 returns Options for a run in dir with a fake kernel and module
// tree, self standing in for nitrovm; QEMU is left to the caller.
func fakeL1(t *testing.T, dir, self string) Options {
	t.Helper()
	mods := filepath.Join(dir, "modules")
	for p, data := range map[string]string{
		filepath.Join(mods, "modules.dep"):      "kernel/kvm.ko.xz:\n",
		filepath.Join(mods, "kernel/kvm.ko.xz"): "module",
		filepath.Join(dir, "vmlinuz"):           "kernel",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Options{
		Nitrovm: self, Command: []string{"true"},
		Kernel: filepath.Join(dir, "vmlinuz"), ModulesDir: mods, Modules: []string{"kvm"},
		Busybox: "none", Timeout: time.Minute,
	}
}

// selfAsNitrovm returns the test binary, which stands in for the static
// nitrovm binary, or skips the test.
func selfAsNitrovm(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	self, err := os.Executable()
	if err != nil || checkStatic(self) != nil {
		t.Skip("the test binary is not a static ELF to stand in for nitrovm")
	}
	return self
}

// TestRunStopped: a run that outlives its Timeout and one whose context is
// cancelled end with errors that say which.
func TestRunStopped(t *testing.T) {
	self := selfAsNitrovm(t)
	stall := errors.New("watchdog")
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
		want    string
	}{
		{"timeout", 300 * time.Millisecond, false, "nested: timed out after 300ms (last output: nested: L1 ready)"},
		{"cancelled", time.Minute, true, "nested: stopped: watchdog (last output: nested: L1 ready)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := fakeL1(t, dir, self)
			opts.Timeout = tt.timeout
			opts.QEMU = filepath.Join(dir, "qemu")
			if err := os.WriteFile(opts.QEMU, []byte("#!/bin/sh\necho 'nested: L1 ready'\nexec sleep 60\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			if tt.cancel {
				time.AfterFunc(300*time.Millisecond, func() { cancel(stall) })
			}
			_, err := Run(ctx, opts)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRunWithFakeQEMU(t *testing.T) {
	self := selfAsNitrovm(t)
	tests := []struct {
		name     string
		outputs  []string
		want     int
		wantErr  bool
		wantRuns string
	}{
		{"exit status", []string{`nested: L1 ready\r\nhello\r\nNITROVM-NESTED-EXIT 5\r\n`}, 5, false, "1"},
		{"retry after early crash", []string{`Kernel panic\n`, `nested: L1 ready\nNITROVM-NESTED-EXIT 0\n`}, 0, false, "2"},
		{"no retry once running", []string{`nested: L1 ready\nKernel panic\n`, `NITROVM-NESTED-EXIT 0\n`}, 0, true, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := fakeL1(t, dir, self)
			opts.QEMU = fakeQEMU(t, dir, tt.outputs...)
			res, err := Run(context.Background(), opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && res.ExitCode != tt.want {
				t.Errorf("exit code: got %d, want %d", res.ExitCode, tt.want)
			}
			runs, _ := os.ReadFile(filepath.Join(dir, "count"))
			if got := strings.TrimSpace(string(runs)); got != tt.wantRuns {
				t.Errorf("QEMU runs: got %s, want %s", got, tt.wantRuns)
			}
		})
	}
}

func TestRunOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no nitrovm", Options{Command: []string{"true"}}},
		{"too little memory", Options{Nitrovm: "/bin/sh", MemoryMiB: 16}},
		{"nitrovm missing", Options{Nitrovm: "/nonexistent/nitrovm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.opts); err == nil {
				t.Errorf("got nil error, want one")
			}
		})
	}
}

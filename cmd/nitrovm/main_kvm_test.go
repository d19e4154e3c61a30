//go:build kvm

package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// spinKernel returns a tiny bzImage (no Linux) whose 64-bit code prints
// "ready\n" on the serial port and then spins forever.
func spinKernel(t *testing.T) string {
	t.Helper()
	code := append([]byte{
		0x48, 0x8d, 0x35, 0x0e, 0, 0, 0, // lea rsi, [rip+14]: the string
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xac,       // lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz spin
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp lodsb
		0xeb, 0xfe, // spin: jmp spin
	}, "ready\n\x00"...)
	le := binary.LittleEndian
	k := make([]byte, 5*512+0x200+len(code))
	le.PutUint16(k[0x1fe:], 0xaa55)
	k[0x201] = 0x6a
	le.PutUint32(k[0x202:], 0x53726448) // "HdrS"
	le.PutUint16(k[0x206:], 0x20f)      // boot protocol 2.15
	le.PutUint16(k[0x236:], 1)          // XLF_KERNEL_64
	copy(k[5*512+0x200:], code)
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, k, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBootSignals sends real SIGINT and SIGTERM to "nitrovm boot" (this
// test binary running nitrovm's main) once its guest runs: the VM stops
// and boot exits with status 4. Tiny guests run even on a PVM-backed
// /dev/kvm: go test -tags kvm ./cmd/nitrovm.
func TestBootSignals(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("needs /dev/kvm: %v", err)
	}
	kernel := spinKernel(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := self(t, "main", []string{"NITROVM_SKIP_HOST_CHECK=1"}, "boot", "--kernel", kernel, "--memory", "64", "--cpu-count", "1")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan bool, 1)
			go func() {
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				ready <- line == "ready\n"
			}()
			select {
			case ok := <-ready:
				if !ok {
					cmd.Process.Kill()
					t.Fatalf("guest did not print ready; stderr %q", stderr.String())
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("no ready line from the guest in 60 s; stderr %q", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("boot still runs 30 s after %v", sig)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 4 {
				t.Errorf("after %v: got %v, want exit status 4; stderr %q", sig, err, stderr.String())
			}
			// The VM's exit counters are logged first (level INFO); the
			// stop is the last line.
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if !strings.HasPrefix(lines[len(lines)-1], "nitrovm: stopped") {
				t.Errorf("after %v: stderr %q, want its last line to start with \"nitrovm: stopped\"", sig, stderr.String())
			}
		})
	}
}

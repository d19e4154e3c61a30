//go:build kvm

package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// guestTimeout bounds a real Linux guest's run in these tests.
const guestTimeout = 3 * time.Minute

// guestLogger is a real guest's VM logger in these tests: stderr, so that
// a state dump (a triple fault's, or runGuest's before its deadline)
// reaches the nested e2e harness, which classifies L1 faults from it
// (internal/nested).
func guestLogger() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }

// runGuest runs vm for at most guestTimeout; a guest still running 15 s
// before then gets its state dumped (VM.Dump) to the VM's logger.
func runGuest(vm *VM) (Exit, error) {
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	dump := time.AfterFunc(guestTimeout-15*time.Second, func() {
		vm.Dump(fmt.Sprintf("no reboot within %s", guestTimeout-15*time.Second))
	})
	defer dump.Stop()
	return vm.Run(ctx)
}

// fakeKernel returns a bzImage whose 64-bit entry (payload offset 0x200)
// runs code.
func fakeKernel(code []byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, 5*512+0x200+len(code)+64)
	le.PutUint16(b[0x1fe:], 0xaa55)
	b[0x201] = 0x6a
	le.PutUint32(b[0x202:], 0x53726448)
	le.PutUint16(b[0x206:], 0x20f)
	le.PutUint32(b[0x22c:], 0x7fffffff)
	le.PutUint16(b[0x236:], 1)
	le.PutUint32(b[0x238:], 2047)
	copy(b[5*512+0x200:], code)
	return b
}

var (
	codeReset = []byte{0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe} // mov al,0xfe; out 0x64,al; jmp $
	codeSpin  = []byte{0xeb, 0xfe}                         // jmp $
	codeUD2   = []byte{0x0f, 0x0b}                         // ud2 with an empty IDT: triple fault
	// Print "Kernel panic - not syncing: test\n" on COM1, then spin.
	codePanic = append([]byte{
		0x48, 0x8d, 0x35, 0x0e, 0, 0, 0, // lea rsi, [rip+14]
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xac,       // lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz +3
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp lodsb
		0xeb, 0xfe, // jmp $
	}, "Kernel panic - not syncing: test\n\x00"...)
)

// TestRun runs tiny 64-bit guests on /dev/kvm (go test -tags kvm). PVM runs
// these, so this checks the VMM's boot state and exit handling without a
// Linux kernel.
func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		code    []byte
		cancel  time.Duration
		want    ExitReason
		detail  string
		console string
	}{
		{"reset", codeReset, 0, ExitReboot, "i8042", ""},
		{"panic", codePanic, 0, ExitPanic, "Kernel panic - not syncing: test", "Kernel panic - not syncing: test\n"},
		{"triple fault", codeUD2, 0, ExitPanic, "triple fault", ""},
		{"stopped", codeSpin, 200 * time.Millisecond, ExitStopped, "stop requested", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := fakeKernel(tt.code)
			var console bytes.Buffer
			vm, err := Build(context.Background(), Config{
				Kernel: bytes.NewReader(k), KernelSize: int64(len(k)), Cmdline: "console=ttyS0",
				MemoryMiB: 64, CPUs: 2, Console: &console,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			ctx := context.Background()
			if tt.cancel > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.cancel)
				defer cancel()
			}
			e, err := vm.Run(ctx)
			if err != nil {
				t.Fatalf("Run: %v (exit %+v)", err, e)
			}
			if e.Reason != tt.want || !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("exit: got %v %q, want %v containing %q", e.Reason, e.Detail, tt.want, tt.detail)
			}
			if console.String() != tt.console {
				t.Errorf("console: got %q, want %q", console.String(), tt.console)
			}
		})
	}
}

// dummyDevice is a virtio device without queues that no Linux driver claims.
type dummyDevice struct{ id uint32 }

func (d dummyDevice) DeviceID() uint32                                             { return d.id }
func (dummyDevice) Features() uint64                                               { return 0 }
func (dummyDevice) QueueMaxSizes() []uint16                                        { return []uint16{16} }
func (dummyDevice) ReadConfig(_ uint64, data []byte)                               { clear(data) }
func (dummyDevice) WriteConfig(uint64, []byte)                                     {}
func (dummyDevice) Notify(int)                                                     {}
func (dummyDevice) Reset()                                                         {}
func (dummyDevice) Activate(*memory.Guest, []*virtio.Queue, virtio.Signaler) error { return nil }

// testGuest is a real Linux kernel and initrd for the tests that boot one.
type testGuest struct {
	kernel     *os.File
	kernelSize int64
	initrd     *io.SectionReader
}

// linuxGuest opens $NITROVM_TEST_KERNEL and $NITROVM_TEST_INITRD, closed
// when the test ends. It skips the test when they are not set or when this
// host's KVM cannot run Linux.
func linuxGuest(t *testing.T) testGuest {
	t.Helper()
	kpath, ipath := os.Getenv("NITROVM_TEST_KERNEL"), os.Getenv("NITROVM_TEST_INITRD")
	if kpath == "" || ipath == "" {
		t.Skip("NITROVM_TEST_KERNEL and NITROVM_TEST_INITRD not set")
	}
	if err := CheckHost(); err != nil {
		t.Skip(err)
	}
	open := func(p string) (*os.File, int64) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return f, fi.Size()
	}
	k, ks := open(kpath)
	r, rs := open(ipath)
	return testGuest{kernel: k, kernelSize: ks, initrd: io.NewSectionReader(r, 0, rs)}
}

// TestGuestVirtio boots a real kernel with guest/testinit and two virtio
// devices, with ACPI (devices from the DSDT) and without (MP table and
// command-line devices); it needs a KVM that runs Linux (the nested L1:
// test/e2e's TestVMMGuests runs it there) and NITROVM_TEST_KERNEL /
// NITROVM_TEST_INITRD.
func TestGuestVirtio(t *testing.T) {
	g := linuxGuest(t)
	for _, extra := range []string{"", " acpi=off"} {
		t.Run("cmdline"+extra, func(t *testing.T) {
			var console bytes.Buffer
			vm, err := Build(context.Background(), Config{
				Kernel: g.kernel, KernelSize: g.kernelSize,
				Cmdline:   "reboot=k panic=30 pci=off nomodules console=ttyS0 nitrovm.test=sysinfo" + extra,
				Initrd:    []*io.SectionReader{g.initrd},
				MemoryMiB: 256, CPUs: 2, Console: &console,
				Devices: []virtio.Device{dummyDevice{42}, dummyDevice{43}},
				Logger:  guestLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			e, err := runGuest(vm)
			t.Logf("console:\n%s", console.String())
			if err != nil || e.Reason != ExitReboot {
				t.Fatalf("exit: got %v %q %v, want reboot", e.Reason, e.Detail, err)
			}
			for _, want := range []string{
				"NITROVM-TEST virtio=virtio0:42,virtio1:43", "NITROVM-TEST cpus=2",
				"virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6",
			} {
				if !strings.Contains(console.String(), want) {
					t.Errorf("console lacks %q", want)
				}
			}
		})
	}
}

// BenchmarkBuildRunReset measures the VMM's fixed cost: build a 64 MiB,
// 2-vCPU VM, run a guest that resets at once, tear it down.
func BenchmarkBuildRunReset(b *testing.B) {
	k := fakeKernel(codeReset)
	for b.Loop() {
		vm, err := Build(context.Background(), Config{Kernel: bytes.NewReader(k), KernelSize: int64(len(k)), MemoryMiB: 64, CPUs: 2})
		if err != nil {
			b.Fatal(err)
		}
		if e, err := vm.Run(context.Background()); err != nil || e.Reason != ExitReboot {
			b.Fatalf("exit: got %v %v, want reboot", e, err)
		}
		if err := vm.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

//go:build kvm

package vmm

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
)

// echoBackend answers every guest connection with an echo.
type echoBackend struct{}

// ConnectHost implements vsock.Backend.ConnectHost.
func (echoBackend) ConnectHost(_ context.Context, _ uint64, _ uint32, _ uint32) (vsock.Stream, error) {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		_, _ = io.Copy(b, b)
	}()
	return a, nil
}

// TestGuestVsockHeartbeat boots a real kernel whose testinit does the Nitro
// heartbeat over a real virtio-vsock device: it exercises the MMIO
// transport, the irqfd interrupts and guest memory with a Linux driver. Same
// requirements as TestGuestVirtio.
func TestGuestVsockHeartbeat(t *testing.T) {
	g := linuxGuest(t)
	dev, err := vsock.New(16, echoBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	vm, err := Build(context.Background(), Config{
		Kernel: g.kernel, KernelSize: g.kernelSize,
		Cmdline:   "reboot=k panic=30 pci=off nomodules console=ttyS0 nitrovm.test=sysinfo,heartbeat",
		Initrd:    []*io.SectionReader{g.initrd},
		MemoryMiB: 256, CPUs: 2, Console: &console,
		Devices: []virtio.Device{dev},
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
	for _, want := range []string{"NITROVM-TEST virtio=virtio0:19", "NITROVM-TEST heartbeat=ok", "NITROVM-TEST check=heartbeat result=ok"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

package vsockhost_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/vsockhost"
)

// Example shows how the VMM assembles the vsock device and its host side.
func Example() {
	logger := slog.New(slog.DiscardHandler)
	fwd, err := vsockhost.ParseForward("8000=127.0.0.1:80") // --forward
	if err != nil {
		fmt.Println(err)
		return
	}
	pub, err := vsockhost.ParsePublish("0:5005") // --publish
	if err != nil {
		fmt.Println(err)
		return
	}
	host, err := vsockhost.New(vsockhost.Options{
		UDSPath:          os.TempDir() + "/example-enclave.sock",
		Forwards:         []vsockhost.Forward{fwd},
		Publishes:        []vsockhost.Publish{pub},
		HeartbeatTimeout: 100 * time.Millisecond,
	}, logger)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()
	dev, err := vsock.New(16, host, logger) // the enclave CID; dev goes on the virtio-mmio bus.
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	if err := host.Serve(dev); err != nil {
		fmt.Println(err)
		return
	}
	vmStart := time.Now()
	// ... build and start the VM here ...
	d, err := host.WaitHeartbeat(context.Background(), vmStart)
	if err != nil {
		fmt.Println(err) // map vsockhost.ErrNoHeartbeat to E36 and terminate.
		return
	}
	fmt.Printf("enclave booted in %d ms\n", d.Milliseconds())
	// Output: vsockhost: enclave sent no heartbeat on port 9000 within 100ms
}

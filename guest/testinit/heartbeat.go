package main

import (
	"fmt"
	"time"

	"github.com/mdlayher/vsock"
)

// Nitro boot heartbeat (see internal/vsockhost): the enclave's init
// connects to the parent and exchanges one byte.
const (
	parentCID        = 3    // the parent instance, as on Nitro.
	heartbeatPort    = 9000 // parent port of the heartbeat listener.
	heartbeatByte    = 0xB7 // sent and echoed.
	heartbeatTimeout = 10 * time.Second
)

// heartbeat sends 0xB7 to CID 3 port 9000 and expects it back (the Nitro
// enclave boot heartbeat), then prints
//
//	NITROVM-TEST heartbeat=ok ms=N
//
// where N is the time the exchange took.
func heartbeat(r *report) error {
	start := time.Now()
	c, err := vsock.Dial(parentCID, heartbeatPort, nil)
	if err != nil {
		return fmt.Errorf("heartbeat: dial parent port %d: %w", heartbeatPort, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(heartbeatTimeout)); err != nil {
		return fmt.Errorf("heartbeat: set deadline: %w", err)
	}
	if _, err := c.Write([]byte{heartbeatByte}); err != nil {
		return fmt.Errorf("heartbeat: send: %w", err)
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return fmt.Errorf("heartbeat: receive: %w", err)
	}
	if b[0] != heartbeatByte {
		return fmt.Errorf("heartbeat: got %#x, want %#x", b[0], heartbeatByte)
	}
	r.kv("heartbeat", "ok ms=%d", time.Since(start).Milliseconds())
	return nil
}

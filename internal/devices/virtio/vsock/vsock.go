// Package vsock implements the virtio-vsock device (VirtIO 1.1 §5.10): the
// enclave's only channel to the outside, with the parent instance at CID 3
// and the host at CID 2, as on AWS Nitro.
//
// The package is split like Firecracker's vsock device: packet.go is the
// wire header (include/uapi/linux/virtio_vsock.h), conn.go is the per
// connection state machine with credit-based flow control, mux.go routes
// packets between the guest and the connections, and device.go is the thin
// virtio glue over the rx, tx and event queues. Host-side endpoints (Unix
// sockets, TCP, AF_VSOCK, the heartbeat) live behind the Backend interface,
// implemented by package vsockhost.
//
// # Security
//
// Every packet header and payload comes from an untrusted guest. Headers
// are decoded with explicit bounds checks; payloads are capped at
// MaxPacketPayloadBytes; the number of connections is capped at
// MaxConns; and the bytes buffered per connection are capped at
// ConnBufBytes toward the host and OutBufBytes toward the guest. A guest
// that violates the credit it was given gets its connection reset. A
// guest (or host peer) that stops reading stalls only its own connection.
package vsock

import (
	"context"
	"errors"
	"io"
	"time"
)

// Well-known context IDs (include/uapi/linux/vm_sockets.h).
const (
	// VMADDR_CID_HOST is the host's CID (2).
	VMADDR_CID_HOST = 2
	// ParentCID is the CID of the Nitro parent instance as seen from the
	// enclave (3).
	ParentCID = 3
	// MinGuestCID is the smallest CID an enclave may have (nitro-cli).
	MinGuestCID = 4
)

// Limits and timeouts of the device.
const (
	// MaxConns bounds the number of simultaneous connections per device.
	// With the buffers below, a device holds at most about
	// MaxConns * (ConnBufBytes + OutBufBytes + 2 * 64 KiB) = 128 MiB, and
	// only when every connection is saturated both ways.
	MaxConns = 256
	// ConnBufBytes is the receive buffer the device advertises to the guest
	// per connection (buf_alloc, as Linux's default): the cap on bytes
	// from the guest not yet written to the host stream.
	ConnBufBytes = 256 << 10
	// OutBufBytes caps the bytes read from a host stream and not yet
	// placed in the guest's rx buffers, per connection.
	OutBufBytes = 128 << 10
	// MaxPacketPayloadBytes is the largest payload accepted in one packet
	// (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE in include/linux/virtio_vsock.h).
	MaxPacketPayloadBytes = 64 << 10
	// MaxPendingResets bounds the resets queued for packets that belong to
	// no connection; more are dropped (the guest times out instead).
	MaxPendingResets = 256
	// ConnRequestTimeout is how long a host-initiated connection waits for
	// the guest's response, from when the request is placed in the
	// guest's rx queue (Firecracker uses the same 2 s, counted the same
	// way).
	ConnRequestTimeout = 2 * time.Second
	// ConnQueueTimeout bounds how long a host-initiated connection
	// request may wait for a guest rx buffer before it is sent.
	ConnQueueTimeout = 30 * time.Second
	// HostConnectTimeout bounds Backend.ConnectHost; Linux guests give up
	// on connect after 2 s by default.
	HostConnectTimeout = 2 * time.Second
	// ConnShutdownTimeout is how long the device waits for the guest's
	// reset after a full shutdown before forgetting the connection.
	ConnShutdownTimeout = 2 * time.Second
)

// ErrConnRefused is returned by Device.ConnectGuest when the guest answers
// with a reset (nobody listens on the port).
var ErrConnRefused = errors.New("vsock: connection refused by guest")

// ErrTimeout is returned by Device.ConnectGuest when the guest does not
// answer the connection request within ConnRequestTimeout.
var ErrTimeout = errors.New("vsock: connection request timed out")

// ErrTooManyConns is returned when MaxConns connections are open.
var ErrTooManyConns = errors.New("vsock: too many connections")

// ErrClosed is returned when the device was reset or closed.
var ErrClosed = errors.New("vsock: device closed")

// Stream is the host side of one connection: bytes the guest sends are
// written to it, bytes read from it are sent to the guest. If it also has
// a CloseWrite() error method, the device calls it when the guest shuts
// down its sending side (half close); Close ends the connection.
type Stream = io.ReadWriteCloser

// Backend connects guest-initiated connections to host endpoints. It is
// implemented by package vsockhost; tests use simple in-memory ones.
type Backend interface {
	// ConnectHost is called when the guest (srcPort) connects to cid:port,
	// where cid is ParentCID or VMADDR_CID_HOST. It returns the host side
	// of the connection, or an error to refuse it (the guest gets a reset).
	// ctx carries HostConnectTimeout. It runs on its own goroutine.
	ConnectHost(ctx context.Context, cid uint64, port uint32, srcPort uint32) (Stream, error)
}

// Connector opens connections from the host into the guest; *Device
// implements it. Backends use it to publish guest ports.
type Connector interface {
	// ConnectGuest connects the host stream to guest port port, with the
	// connection's source at the parent (CID 3). It blocks until the guest
	// accepts or refuses (ErrConnRefused), ctx ends, or ConnRequestTimeout
	// passes after the guest got the request (ErrTimeout; ConnQueueTimeout
	// while the request waits for an rx buffer).
	//
	// Postconditions: on success the device owns stream and closes it when
	// the connection ends; onConnect (if not nil) was called with the
	// connection's host port before any guest byte was written to stream,
	// and an error from it resets the connection. On error the caller
	// still owns stream.
	ConnectGuest(ctx context.Context, port uint32, stream Stream, onConnect func(hostPort uint32) error) error
}

package enclave

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"time"
)

// Spec is everything a Launcher needs to start one enclave VM.
type Spec struct {
	ID        string   // enclave ID; also the NSM module ID
	EIFPath   string   // EIF to boot
	MemoryMiB uint64   // guest RAM in MiB
	CPUIDs    []uint32 // CPU IDs from the pool; len is the vCPU count
	CID       uint64   // guest vsock CID
	Debug     bool     // debug mode (console kept, attestation PCRs zero)

	// Console receives the guest's serial output. It is io.Discard in
	// production mode.
	Console io.Writer

	VsockUDS         string   // hybrid vsock Unix socket
	Forwards         []string // --forward specifications, unparsed
	Publishes        []string // --publish specifications, unparsed
	AFVsock          bool     // bridge to the host's AF_VSOCK
	HeartbeatTimeout time.Duration
	KMS              bool // serve a local KMS on vsock port KMSVsockPort

	ParentID      string // parent instance ID (PCR4)
	ParentRoleARN string // parent IAM role ARN (PCR3)

	Logger *slog.Logger

	// Contain, when set, is called once the VM is built and before its
	// first vCPU runs, with the host paths the running VM still needs
	// (beyond its vsock sockets), e.g. the local KMS's key store. An
	// error aborts the launch.
	Contain func(runtimePaths []string) error
}

// Launcher starts enclave VMs. The real one boots a KVM microVM from the
// EIF; tests use fakes.
type Launcher interface {
	// Launch builds the VM described by spec and starts it. It returns
	// once the VM runs; the VM stops when ctx ends or Instance.Stop is
	// called.
	Launch(ctx context.Context, spec Spec) (Instance, error)
}

// Instance is a running enclave VM.
type Instance interface {
	// Measurements returns the EIF's measurements as describe-eif's
	// Measurements object.
	Measurements() json.RawMessage
	// Heartbeat is closed once the enclave's heartbeat was answered.
	Heartbeat() <-chan struct{}
	// Done is closed once the VM has exited and its resources are freed.
	Done() <-chan struct{}
	// Result describes how the VM exited ("" for a requested stop). It is
	// valid once Done is closed.
	Result() string
	// Stop asks the VM to stop; Done is closed when it has.
	Stop()
}

package enclave

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is an enclave's lifecycle state as describe-enclaves reports it.
type State string

// Enclave states. nitro-cli reports RUNNING and TERMINATING; STARTING marks
// a reservation whose VM has not yet sent its heartbeat and is not listed.
const (
	StateStarting    State = "STARTING"
	StateRunning     State = "RUNNING"
	StateTerminating State = "TERMINATING"
)

// Record describes one enclave. It is stored as record.json in the
// enclave's directory; the supervisor owns it once it has started.
type Record struct {
	ID        string   // enclave ID, "<parent id>-enc<slot hex>"
	Name      string   // enclave name, unique among live enclaves
	Slot      uint64   // slot number, never reused within one state directory
	CID       uint64   // the enclave's vsock CID
	CPUIDs    []uint32 // CPU IDs taken from the CPU pool
	MemoryMiB uint64   // memory given to the enclave, in MiB
	Debug     bool     // debug mode: console available, PCRs read as zero

	EIFPath          string        // absolute path of the EIF
	ParentID         string        // parent instance ID (PCR4, ID prefix)
	ParentRoleARN    string        // parent IAM role ARN (PCR3)
	VsockUDS         string        // hybrid vsock Unix socket path
	Forwards         []string      // --forward specifications
	Publishes        []string      // --publish specifications
	AFVsock          bool          // bridge to the host's AF_VSOCK
	HeartbeatTimeout time.Duration // how long to wait for the heartbeat
	KMS              bool          // run a local KMS forwarded to vsock port KMSVsockPort
	Jail             Jail          // the supervisor's containment

	State      State     // lifecycle state
	OwnerPID   int       // process that made the reservation
	OwnerStart uint64    // OwnerPID's start time (clock ticks since boot)
	PID        int       // supervisor process, 0 until it started
	PIDStart   uint64    // PID's start time (clock ticks since boot)
	Created    time.Time // when the reservation was made

	// Measurements is the EIF's measurements object as describe-eif prints
	// it ({"HashAlgorithm":..,"PCR0":..}); set before the VM starts.
	Measurements json.RawMessage `json:",omitempty"`

	// ImageName, ImageVersion and Metadata come from the EIF's metadata
	// section at launch (nil without one); describe-enclaves --metadata
	// prints them. Metadata is describe-eif's "Metadata" object.
	ImageName    *string         `json:",omitempty"`
	ImageVersion *string         `json:",omitempty"`
	Metadata     json.RawMessage `json:",omitempty"`

	// BootTimeMs is the supervisor's measure of the boot, in milliseconds:
	// from the start of the VM launch (loading the EIF into a new VM
	// included) to the enclave's heartbeat. 0 until the heartbeat.
	BootTimeMs int64 `json:",omitempty"`
}

// Flags returns nitro-cli's Flags string for the record: "DEBUG_MODE" or
// "NONE".
func (r *Record) Flags() string {
	if r.Debug {
		return "DEBUG_MODE"
	}
	return "NONE"
}

// Names of the files in an enclave directory.
const (
	recordFile     = "record.json"
	controlSocket  = "ctl.sock"
	consoleLogFile = "console.log"
	superviseLog   = "supervisor.log"
	vsockSocket    = "vsock.sock"
)

func readRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, recordFile), err)
	}
	return &r, nil
}

// writeRecord replaces dir's record atomically, so readers never see a
// partial file.
func writeRecord(dir string, r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	f, err := os.CreateTemp(dir, ".record-*")
	if err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write record: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write record: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, recordFile)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write record: %w", err)
	}
	return nil
}

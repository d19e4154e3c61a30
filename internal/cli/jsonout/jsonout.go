// Package jsonout defines the JSON documents the nitro-cli compatible
// lifecycle commands print, field for field and in the order nitro-cli
// prints them (aws-nitro-enclaves-cli src/common/json_output.rs).
//
// Schema version 1; the example and golden tests pin it. Changing a field
// name or order breaks scripts written for nitro-cli.
package jsonout

import (
	"encoding/json"
	"io"
)

// RunEnclave is run-enclave's output (nitro-cli EnclaveRunInfo).
type RunEnclave struct {
	EnclaveName  string   `json:"EnclaveName"`
	EnclaveID    string   `json:"EnclaveID"`
	ProcessID    int      `json:"ProcessID"`
	EnclaveCID   uint64   `json:"EnclaveCID"`
	NumberOfCPUs int      `json:"NumberOfCPUs"`
	CPUIDs       []uint32 `json:"CPUIDs"`
	MemoryMiB    uint64   `json:"MemoryMiB"`
}

// DescribeEnclave is one element of describe-enclaves' output array
// (nitro-cli EnclaveDescribeInfo).
type DescribeEnclave struct {
	EnclaveName  string   `json:"EnclaveName"`
	EnclaveID    string   `json:"EnclaveID"`
	ProcessID    int      `json:"ProcessID"`
	EnclaveCID   uint64   `json:"EnclaveCID"`
	NumberOfCPUs int      `json:"NumberOfCPUs"`
	CPUIDs       []uint32 `json:"CPUIDs"`
	MemoryMiB    uint64   `json:"MemoryMiB"`
	State        string   `json:"State"` // "RUNNING" or "TERMINATING"
	Flags        string   `json:"Flags"` // "NONE" or "DEBUG_MODE"
	// Measurements is the EIF's {"HashAlgorithm","PCR0","PCR1","PCR2"[,
	// "PCR8"]} object, keys sorted as nitro-cli's BTreeMap prints them.
	Measurements json.RawMessage `json:"Measurements,omitempty"`
	// ImageName, ImageVersion and Metadata (describe-eif's Metadata
	// object) are printed with --metadata for EIFs that have them.
	ImageName    *string         `json:"ImageName,omitempty"`
	ImageVersion *string         `json:"ImageVersion,omitempty"`
	Metadata     json.RawMessage `json:"Metadata,omitempty"`
	// BootTimeMs (nitrovm's, not nitro-cli's) is printed with --metadata:
	// the supervisor's time from VM launch to heartbeat, in milliseconds.
	BootTimeMs *int64 `json:"BootTimeMs,omitempty"`
}

// TerminateEnclave is terminate-enclave's output (nitro-cli
// EnclaveTerminateInfo); terminate-enclave --all prints an array of them.
type TerminateEnclave struct {
	EnclaveName string `json:"EnclaveName,omitempty"`
	EnclaveID   string `json:"EnclaveID"`
	Terminated  bool   `json:"Terminated"`
}

// Write prints v as nitro-cli does (serde_json's pretty printer: two-space
// indent) followed by a newline. Nil slices of CPU IDs print as [].
func Write(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// MarshalJSON keeps CPUIDs an array when empty.
func (r RunEnclave) MarshalJSON() ([]byte, error) {
	type plain RunEnclave
	if r.CPUIDs == nil {
		r.CPUIDs = []uint32{}
	}
	return json.Marshal(plain(r))
}

// MarshalJSON keeps CPUIDs an array when empty.
func (d DescribeEnclave) MarshalJSON() ([]byte, error) {
	type plain DescribeEnclave
	if d.CPUIDs == nil {
		d.CPUIDs = []uint32{}
	}
	return json.Marshal(plain(d))
}

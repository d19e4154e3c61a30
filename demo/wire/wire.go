// Package wire is the tiny protocol between the demo enclave (demo/hello)
// and the demo parent (demo/parent): the ports they use and a
// length-prefixed frame for the attestation document.
package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Ports of the demo, on the parent (CID 3) and in the enclave.
const (
	// AttestationPort is the parent port the enclave sends its document to.
	AttestationPort = 5000
	// EchoPort is the enclave port of the echo service.
	EchoPort = 5005
	// MaxFrameBytes caps a frame: NSM responses are at most 0x3000 bytes.
	MaxFrameBytes = 64 << 10
)

// WriteFrame writes b preceded by its length as a big-endian uint32.
func WriteFrame(w io.Writer, b []byte) error {
	if len(b) > MaxFrameBytes {
		return fmt.Errorf("wire: frame of %d bytes exceeds %d", len(b), MaxFrameBytes)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(append(n[:], b...)); err != nil {
		return fmt.Errorf("wire: write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame written by WriteFrame.
func ReadFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("wire: read frame length: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxFrameBytes {
		return nil, fmt.Errorf("wire: frame of %d bytes exceeds %d", size, MaxFrameBytes)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("wire: read frame: %w", err)
	}
	return b, nil
}

// The KMS step. On the connection that carried the attestation document the
// parent answers with one frame, a JSON KMSRequest, or closes it (no KMS
// step); the enclave then sends one frame, a JSON KMSReport.
const (
	// KMSPort is the enclave vsock port of KMS: `run-enclave --kms`
	// forwards parent port 8000 (vsock-proxy's convention) to its local KMS.
	KMSPort = 8000
)

// KMSRequest asks the enclave to Decrypt each ciphertext with Recipient.
type KMSRequest struct {
	// Region names the KMS endpoint, kms.<Region>.amazonaws.com.
	Region string
	// Ciphertexts are KMS CiphertextBlobs.
	Ciphertexts [][]byte
}

// KMSResult is the outcome of one Decrypt: the secret's SHA-256 (hex) or
// the error, "<Code>: <message>" for a KMS error.
type KMSResult struct {
	SHA256 string `json:",omitempty"`
	Error  string `json:",omitempty"`
}

// KMSReport is the enclave's answer to a KMSRequest.
type KMSReport struct {
	// PublicKey is the Recipient's RSA key, DER SubjectPublicKeyInfo: the
	// parent can make the same request with another attestation document.
	PublicKey []byte
	Results   []KMSResult
}

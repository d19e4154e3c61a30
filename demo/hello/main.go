// Command hello is the nitrovm demo enclave application. Started by the
// enclave init, it asks the Nitro Secure Module (/dev/nsm) for an
// attestation document carrying a nonce, sends it to the parent (vsock CID 3
// port 5000, length-prefixed), then serves an echo on vsock port 5005 until
// the enclave is terminated.
//
// When the parent answers the document with a KMS request (package wire),
// it first decrypts the parent's ciphertexts with AWS KMS's Decrypt and a
// Recipient (aws-sdk-go-v2, over vsock port 8000: `run-enclave --kms`) and
// reports each secret's SHA-256 or the error.
//
// Environment: NONCE (the nonce as text; default "nitrovm-demo-nonce").
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hf/nsm"
	"github.com/hf/nsm/request"
	"github.com/mdlayher/vsock"

	"github.com/nitrovm/nitrovm/demo/wire"
)

const (
	// parentCID is the parent instance's vsock address.
	parentCID = 3
	// sendAttempts, 200 ms apart, bound the wait for the parent's listener.
	sendAttempts = 300
	// kmsRequestWait bounds the wait for the parent's KMS request.
	kmsRequestWait = 60 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "hello: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	nonce := os.Getenv("NONCE")
	if nonce == "" {
		nonce = "nitrovm-demo-nonce"
	}
	doc, err := attest([]byte(nonce), []byte("hello from the nitrovm demo enclave"), nil)
	if err != nil {
		return err
	}
	fmt.Printf("hello: attestation document of %d bytes\n", len(doc))
	if err := sendDoc(doc); err != nil {
		// Keep serving the echo: the parent may still want to talk.
		fmt.Fprintf(os.Stderr, "hello: %v\n", err)
	}
	return echo()
}

// attest gets an attestation document with nonce, user_data and public_key.
func attest(nonce, userData, publicKey []byte) ([]byte, error) {
	sess, err := nsm.OpenDefaultSession()
	if err != nil {
		return nil, fmt.Errorf("open /dev/nsm: %w", err)
	}
	defer sess.Close()
	res, err := sess.Send(&request.Attestation{Nonce: nonce, UserData: userData, PublicKey: publicKey})
	if err != nil {
		return nil, fmt.Errorf("attestation request: %w", err)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("attestation request: NSM error %s", res.Error)
	}
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		return nil, fmt.Errorf("attestation request: empty response")
	}
	return res.Attestation.Document, nil
}

// sendDoc delivers the document to the parent, retrying while the parent's
// listener is not up yet, then runs the KMS step if the parent asks for it.
func sendDoc(doc []byte) error {
	var conn net.Conn
	var err error
	for i := 0; i < sendAttempts; i++ {
		if conn, err = vsock.Dial(parentCID, wire.AttestationPort, nil); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("connect to parent port %d: %w", wire.AttestationPort, err)
	}
	defer conn.Close()
	if err := wire.WriteFrame(conn, doc); err != nil {
		return err
	}
	fmt.Printf("hello: sent the attestation document to the parent\n")
	conn.SetReadDeadline(time.Now().Add(kmsRequestWait))
	b, err := wire.ReadFrame(conn)
	if err != nil {
		return nil // no KMS step: the parent closed the connection.
	}
	var req wire.KMSRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return fmt.Errorf("KMS request: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	rep, err := kmsStep(req)
	if err != nil {
		return err
	}
	b, err = json.Marshal(rep)
	if err != nil {
		return err
	}
	return wire.WriteFrame(conn, b)
}

// echo serves the echo port forever.
func echo() error {
	l, err := vsock.Listen(wire.EchoPort, nil)
	if err != nil {
		return fmt.Errorf("listen on vsock port %d: %w", wire.EchoPort, err)
	}
	fmt.Printf("hello: echo on vsock port %d\n", wire.EchoPort)
	for {
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

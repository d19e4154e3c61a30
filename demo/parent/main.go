// Command parent is the parent-instance side of the nitrovm demo. It
// receives the demo enclave's attestation document on port 5000, writes it
// to a file for `nitrovm attestation verify`, then talks to the enclave's
// echo service on port 5005 and checks the answer, printing progress lines.
//
// With -kms-ciphertext FILE (repeatable), the parent answers the document
// with a KMS request: the enclave decrypts each ciphertext with KMS Decrypt
// and a Recipient, through `run-enclave --kms`, and reports the secrets'
// SHA-256 or the errors, which the parent prints; -kms-public-key FILE saves
// the enclave's Recipient key (DER) so that a script can repeat the request
// with another attestation document.
//
// Two transports: -uds PATH uses nitrovm's hybrid vsock Unix sockets
// (Firecracker's convention: the enclave's connections to parent port P
// arrive on PATH_P; the parent reaches enclave port P by connecting to PATH
// and writing "CONNECT P\n", answered "OK <port>\n"); -cid N uses AF_VSOCK
// (on a Nitro parent instance, or a host with vhost-vsock).
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/nitrovm/nitrovm/demo/wire"
)

// config is the parent's command line.
type config struct {
	uds     string        // hybrid vsock base path, or ""
	cid     uint          // enclave CID for AF_VSOCK, when uds is ""
	out     string        // attestation document output file
	message string        // line sent to the echo service
	timeout time.Duration // overall deadline
	launch  []string      // command starting the enclave (nitrovm run-enclave ...), or nil
	verify  bool          // check the document with launch[0]'s attestation verify
	nonce   string        // the nonce the enclave puts in the document
	kms     kmsConfig
}

// kmsConfig is the KMS step's part of the command line.
type kmsConfig struct {
	ciphertexts []string // files holding base64 CiphertextBlobs
	region      string
	publicKey   string // where to save the enclave's Recipient key, or ""
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var c config
	flag.StringVar(&c.uds, "uds", "", "hybrid vsock Unix socket of the enclave (nitrovm)")
	flag.UintVar(&c.cid, "cid", 0, "enclave CID, to use AF_VSOCK instead of -uds")
	flag.StringVar(&c.out, "out", "attestation.cbor", "where to write the attestation document")
	flag.StringVar(&c.message, "message", "hello, enclave", "line to send to the echo service")
	flag.BoolVar(&c.verify, "verify", false, "with a launch command: verify the document with its 'attestation verify' against its 'ca export' root")
	flag.StringVar(&c.nonce, "nonce", "nitrovm-demo-nonce", "nonce the enclave uses (demo/hello's NONCE), checked by -verify")
	flag.Var((*stringList)(&c.kms.ciphertexts), "kms-ciphertext", "file with a base64 KMS CiphertextBlob for the enclave to Decrypt with Recipient (repeatable)")
	flag.StringVar(&c.kms.region, "kms-region", "us-east-1", "region of the enclave's KMS endpoint")
	flag.StringVar(&c.kms.publicKey, "kms-public-key", "", "save the enclave's Recipient public key (DER) to FILE")
	flag.DurationVar(&c.timeout, "timeout", 3*time.Minute, "give up after this long")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: parent (-uds PATH | -cid N) [flags] [-- nitrovm run-enclave ARGS...]\n"+
			"With a command after --, parent starts the enclave itself (adding --vsock-uds PATH),\n"+
			"and terminates it at the end with the same program's terminate-enclave.\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	c.launch = flag.Args()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "parent: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, w io.Writer) error {
	if c.uds == "" && c.cid == 0 {
		return errors.New("give -uds PATH or -cid N")
	}
	if strings.ContainsAny(c.message, "\n") {
		return errors.New("-message must be one line")
	}
	l, where, err := listen(c)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(w, "parent: waiting for the attestation document on %s\n", where)
	if len(c.launch) > 0 {
		id, err := launch(ctx, c, w)
		if err != nil {
			return err
		}
		defer terminate(c, id, w)
	}
	req, err := c.kms.request()
	if err != nil {
		return err
	}
	doc, rep, err := receive(ctx, l, req)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.out, doc, 0o644); err != nil {
		return fmt.Errorf("write attestation document: %w", err)
	}
	fmt.Fprintf(w, "parent: received the attestation document (%d bytes), saved to %s\n", len(doc), c.out)
	if rep != nil {
		if err := c.kms.show(rep, len(req.Ciphertexts), w); err != nil {
			return err
		}
	}
	if c.verify && len(c.launch) > 0 {
		if err := verify(ctx, c, w); err != nil {
			return err
		}
	}
	got, err := echo(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "parent: echo over vsock port %d: sent %q, got %q\n", wire.EchoPort, c.message, got)
	return nil
}

// launch runs the enclave-starting command and returns the EnclaveID it
// prints (nitro-cli's run-enclave JSON).
func launch(ctx context.Context, c config, w io.Writer) (string, error) {
	args := append([]string(nil), c.launch[1:]...)
	if c.uds != "" {
		args = append(args, "--vsock-uds", c.uds)
	}
	cmd := exec.CommandContext(ctx, c.launch[0], args...)
	cmd.Stderr = w
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("start the enclave (%s): %w", strings.Join(c.launch, " "), err)
	}
	var info struct {
		EnclaveID  string `json:"EnclaveID"`
		EnclaveCID uint64 `json:"EnclaveCID"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.EnclaveID == "" {
		return "", fmt.Errorf("start the enclave: no EnclaveID in %q", out)
	}
	fmt.Fprintf(w, "parent: started enclave %s (CID %d)\n", info.EnclaveID, info.EnclaveCID)
	return info.EnclaveID, nil
}

// verify runs `<nitrovm> ca export` and `<nitrovm> attestation verify` on
// the saved document.
func verify(ctx context.Context, c config, w io.Writer) error {
	root, err := exec.CommandContext(ctx, c.launch[0], "ca", "export").Output()
	if err != nil {
		return fmt.Errorf("export the local CA root: %w", err)
	}
	rootFile := c.out + ".root.pem"
	if err := os.WriteFile(rootFile, root, 0o644); err != nil {
		return fmt.Errorf("write root: %w", err)
	}
	out, err := exec.CommandContext(ctx, c.launch[0], "attestation", "verify", "--root", rootFile,
		"--nonce", hex.EncodeToString([]byte(c.nonce)), c.out).CombinedOutput()
	if err != nil {
		return fmt.Errorf("attestation verify: %w: %s", err, out)
	}
	fmt.Fprintf(w, "parent: attestation document verified against the local root (%s)\n", rootFile)
	w.Write(out)
	return nil
}

// terminate ends the enclave started by launch.
func terminate(c config, id string, w io.Writer) {
	out, err := exec.Command(c.launch[0], "terminate-enclave", "--enclave-id", id).CombinedOutput()
	if err != nil {
		fmt.Fprintf(w, "parent: terminate %s: %v: %s\n", id, err, out)
		return
	}
	fmt.Fprintf(w, "parent: terminated enclave %s\n", id)
}

// listen opens the parent's attestation port.
func listen(c config) (net.Listener, string, error) {
	if c.uds != "" {
		p := fmt.Sprintf("%s_%d", c.uds, wire.AttestationPort)
		os.Remove(p) // a stale socket from an earlier run
		l, err := net.Listen("unix", p)
		if err != nil {
			return nil, "", fmt.Errorf("listen on %s: %w", p, err)
		}
		// The enclave's supervisor, which dials this socket for the
		// guest, runs as an unprivileged user when started by root
		// (docs/security.md): let it connect.
		if err := os.Chmod(p, 0o666); err != nil {
			l.Close()
			return nil, "", fmt.Errorf("listen on %s: %w", p, err)
		}
		return l, p, nil
	}
	l, err := vsock.Listen(wire.AttestationPort, nil)
	if err != nil {
		return nil, "", fmt.Errorf("listen on vsock port %d: %w", wire.AttestationPort, err)
	}
	return l, fmt.Sprintf("vsock port %d", wire.AttestationPort), nil
}

// request reads the ciphertext files; nil means no KMS step.
func (k kmsConfig) request() (*wire.KMSRequest, error) {
	if len(k.ciphertexts) == 0 {
		return nil, nil
	}
	req := &wire.KMSRequest{Region: k.region}
	for _, f := range k.ciphertexts {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("-kms-ciphertext: %w", err)
		}
		ct, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(ct) == 0 {
			return nil, fmt.Errorf("-kms-ciphertext %s: not a base64 CiphertextBlob", f)
		}
		req.Ciphertexts = append(req.Ciphertexts, ct)
	}
	return req, nil
}

// show prints the enclave's KMS results and saves its public key.
func (k kmsConfig) show(rep *wire.KMSReport, n int, w io.Writer) error {
	if len(rep.Results) != n {
		return fmt.Errorf("KMS step: the enclave reported %d results for %d ciphertexts", len(rep.Results), n)
	}
	for i, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(w, "parent: enclave KMS Decrypt %d with Recipient: denied or failed: %s\n", i+1, r.Error)
		} else {
			fmt.Fprintf(w, "parent: enclave KMS Decrypt %d with Recipient: secret sha256 %s\n", i+1, r.SHA256)
		}
	}
	if k.publicKey != "" {
		if err := os.WriteFile(k.publicKey, rep.PublicKey, 0o644); err != nil {
			return fmt.Errorf("-kms-public-key: %w", err)
		}
	}
	return nil
}

// receive accepts one connection and reads the attestation document, within
// ctx. With a KMS request it sends the request on the same connection and
// returns the enclave's report; without, it closes the connection.
func receive(ctx context.Context, l net.Listener, req *wire.KMSRequest) ([]byte, *wire.KMSReport, error) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	conn, err := l.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("no attestation document: %w", ctx.Err())
		}
		return nil, nil, fmt.Errorf("accept: %w", err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	doc, err := wire.ReadFrame(conn)
	if err != nil || req == nil {
		return doc, nil, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	if err := wire.WriteFrame(conn, b); err != nil {
		return nil, nil, fmt.Errorf("KMS request: %w", err)
	}
	if b, err = wire.ReadFrame(conn); err != nil {
		return nil, nil, fmt.Errorf("KMS report: %w", err)
	}
	var rep wire.KMSReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, nil, fmt.Errorf("KMS report: %w", err)
	}
	return doc, &rep, nil
}

// echo connects to the enclave's echo port (retrying until the enclave
// listens), sends the message and returns the answer.
func echo(ctx context.Context, c config) (string, error) {
	var lastErr error
	for {
		got, err := echoOnce(ctx, c)
		if err == nil {
			if got != c.message {
				return got, fmt.Errorf("echo: got %q, want %q", got, c.message)
			}
			return got, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("echo: %w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func echoOnce(ctx context.Context, c config) (string, error) {
	conn, err := dialEcho(ctx, c)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	r := bufio.NewReader(conn)
	if c.uds != "" {
		if _, err := fmt.Fprintf(conn, "CONNECT %d\n", wire.EchoPort); err != nil {
			return "", fmt.Errorf("hybrid connect: %w", err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("hybrid connect: %w", err)
		}
		if !strings.HasPrefix(line, "OK ") {
			return "", fmt.Errorf("hybrid connect: got %q, want OK <port>", strings.TrimSpace(line))
		}
	}
	if _, err := io.WriteString(conn, c.message+"\n"); err != nil {
		return "", fmt.Errorf("echo send: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("echo receive: %w", err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func dialEcho(ctx context.Context, c config) (net.Conn, error) {
	if c.uds != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", c.uds)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", c.uds, err)
		}
		return conn, nil
	}
	conn, err := vsock.Dial(uint32(c.cid), wire.EchoPort, nil)
	if err != nil {
		return nil, fmt.Errorf("dial vsock %d:%d: %w", c.cid, wire.EchoPort, err)
	}
	return conn, nil
}

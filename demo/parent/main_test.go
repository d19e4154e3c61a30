package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/demo/wire"
)

// fakeEnclave plays the VMM's hybrid socket and the enclave: it sends doc to
// <uds>_5000 and serves CONNECT 5005 on <uds> with reply (an echo when
// reply is "").
func fakeEnclave(t *testing.T, uds string, doc []byte, okLine, reply string) {
	t.Helper()
	l, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				if line, _ := r.ReadString('\n'); line != fmt.Sprintf("CONNECT %d\n", wire.EchoPort) {
					return
				}
				io.WriteString(c, okLine)
				msg, _ := r.ReadString('\n')
				if reply != "" {
					msg = reply
				}
				io.WriteString(c, msg)
			}()
		}
	}()
	go func() {
		p := fmt.Sprintf("%s_%d", uds, wire.AttestationPort)
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("unix", p); err == nil {
				wire.WriteFrame(c, doc)
				c.Close()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
}

func TestRunHybrid(t *testing.T) {
	dir := t.TempDir()
	uds := filepath.Join(dir, "v.sock")
	fakeEnclave(t, uds, []byte("COSE"), "OK 1073741824\n", "")
	out := filepath.Join(dir, "doc.cbor")
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	launch := []string{"sh", "-c", `echo '{"EnclaveID":"i-0-enc1","EnclaveCID":16}'`}
	if err := run(ctx, config{uds: uds, out: out, message: "ping", launch: launch}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	if b, _ := os.ReadFile(out); string(b) != "COSE" {
		t.Errorf("document: got %q, want %q", b, "COSE")
	}
	if !strings.Contains(log.String(), `got "ping"`) || !strings.Contains(log.String(), "started enclave i-0-enc1") {
		t.Errorf("progress %q lacks the echo line", log.String())
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(dir string) config
		enclave func(t *testing.T, uds string)
	}{
		{"no transport", func(string) config { return config{} }, nil},
		{"multi-line message", func(dir string) config { return config{uds: filepath.Join(dir, "v"), message: "a\nb"} }, nil},
		{"no document", func(dir string) config { return config{uds: filepath.Join(dir, "v"), message: "x"} }, nil},
		{"bad hybrid reply", func(dir string) config {
			return config{uds: filepath.Join(dir, "v"), message: "x", out: filepath.Join(dir, "d")}
		}, func(t *testing.T, uds string) { fakeEnclave(t, uds, []byte("d"), "NO\n", "") }},
		{"wrong echo", func(dir string) config {
			return config{uds: filepath.Join(dir, "v"), message: "x", out: filepath.Join(dir, "d")}
		}, func(t *testing.T, uds string) { fakeEnclave(t, uds, []byte("d"), "OK 1\n", "y\n") }},
		{"launch fails", func(dir string) config {
			return config{uds: filepath.Join(dir, "v"), message: "x", launch: []string{"false"}}
		}, nil},
		{"launch prints no id", func(dir string) config {
			return config{uds: filepath.Join(dir, "v"), message: "x", launch: []string{"echo", "{}"}}
		}, nil},
		{"verify fails", func(dir string) config {
			return config{uds: filepath.Join(dir, "v"), message: "x", out: filepath.Join(dir, "d"), verify: true,
				launch: []string{"sh", "-c", `echo '{"EnclaveID":"i-0-enc1"}'`}}
		}, func(t *testing.T, uds string) { fakeEnclave(t, uds, []byte("d"), "OK 1\n", "") }},
		{"unwritable output", func(dir string) config {
			return config{uds: filepath.Join(dir, "v"), message: "x", out: filepath.Join(dir, "no", "d")}
		}, func(t *testing.T, uds string) { fakeEnclave(t, uds, []byte("d"), "OK 1\n", "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := tt.cfg(dir)
			if tt.enclave != nil {
				tt.enclave(t, c.uds)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if err := run(ctx, c, io.Discard); err == nil {
				t.Error("got nil error, want an error")
			}
		})
	}
}

// TestReceiveKMS plays an enclave that answers the parent's KMS request on
// the attestation connection.
func TestReceiveKMS(t *testing.T) {
	dir := t.TempDir()
	ctFile := filepath.Join(dir, "ct.b64")
	os.WriteFile(ctFile, []byte("Y2lwaGVydGV4dA==\n"), 0o644)
	k := kmsConfig{ciphertexts: []string{ctFile, ctFile}, region: "eu-west-1", publicKey: filepath.Join(dir, "pub.der")}
	req, err := k.request()
	if err != nil || len(req.Ciphertexts) != 2 || string(req.Ciphertexts[0]) != "ciphertext" {
		t.Fatalf("request: %+v, %v", req, err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "v_5000"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("unix", filepath.Join(dir, "v_5000"))
		if err != nil {
			return
		}
		defer c.Close()
		wire.WriteFrame(c, []byte("COSE"))
		b, _ := wire.ReadFrame(c)
		var got wire.KMSRequest
		json.Unmarshal(b, &got)
		rep := wire.KMSReport{PublicKey: []byte("spki")}
		for range got.Ciphertexts {
			rep.Results = append(rep.Results, wire.KMSResult{SHA256: got.Region})
		}
		rep.Results[1] = wire.KMSResult{Error: "AccessDeniedException: no"}
		b, _ = json.Marshal(rep)
		wire.WriteFrame(c, b)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	doc, rep, err := receive(ctx, l, req)
	if err != nil || string(doc) != "COSE" || rep == nil {
		t.Fatalf("receive: %q %+v %v", doc, rep, err)
	}
	var log bytes.Buffer
	if err := k.show(rep, 2, &log); err != nil {
		t.Fatal(err)
	}
	want := "parent: enclave KMS Decrypt 1 with Recipient: secret sha256 eu-west-1\nparent: enclave KMS Decrypt 2 with Recipient: denied or failed: AccessDeniedException: no\n"
	if log.String() != want {
		t.Errorf("got %q, want %q", log.String(), want)
	}
	if b, _ := os.ReadFile(k.publicKey); string(b) != "spki" {
		t.Errorf("public key file: got %q", b)
	}
	if err := k.show(rep, 3, io.Discard); err == nil {
		t.Error("show accepted 2 results for 3 ciphertexts")
	}
	os.WriteFile(ctFile, []byte("not base64!"), 0o644)
	if _, err := k.request(); err == nil {
		t.Error("request accepted a file that is not base64")
	}
}

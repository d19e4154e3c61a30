package main

import (
	"bufio"
	"bytes"
	"context"
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

package vsockhost

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// FuzzReadConnectLine checks the hybrid vsock request parser on what any
// local process may send: no panic, no read past the line, and a port
// only for a well-formed line.
func FuzzReadConnectLine(f *testing.F) {
	for _, s := range []string{"CONNECT 5005\n", "CONNECT 1\r\nrest", "CONNECT \n", "connect 5\n", "CONNECT 99999999999\n", "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		port, err := readConnectLine(r)
		i := bytes.IndexByte(b, '\n')
		if i >= 0 && i <= maxConnectLineBytes && r.Len() != len(b)-i-1 {
			t.Fatalf("consumed %d bytes, want %d", len(b)-r.Len(), i+1)
		}
		if err != nil {
			return
		}
		if i < 0 {
			t.Fatalf("got port %d without a newline", port)
		}
		line := string(bytes.TrimSuffix(b[:i], []byte("\r")))
		rest, ok := strings.CutPrefix(line, "CONNECT ")
		p, perr := strconv.ParseUint(strings.TrimSpace(rest), 10, 32)
		if !ok || perr != nil || uint32(p) != port {
			t.Fatalf("got port %d from %q", port, line)
		}
	})
}

func TestReadConnectLine(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr bool
	}{
		{"CONNECT 5005\n", 5005, false},
		{"CONNECT 5005\r\n", 5005, false},
		{"CONNECT 5005", 0, true},
		{"LISTEN 5005\n", 0, true},
		{"CONNECT -1\n", 0, true},
		{"CONNECT 4294967295\n", 0, true},
		{"CONNECT " + string(bytes.Repeat([]byte("1"), 80)) + "\n", 0, true},
	}
	for _, tt := range tests {
		got, err := readConnectLine(bytes.NewReader([]byte(tt.in)))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("readConnectLine(%.20q): got %d, %v, want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

package wire

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte("doc")); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFrame(&buf)
	if err != nil || string(got) != "doc" {
		t.Errorf("got %q, %v, want %q", got, err, "doc")
	}
}

func TestFrameErrors(t *testing.T) {
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, MaxFrameBytes+1)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short length", []byte{0, 0}},
		{"too large", huge},
		{"short body", []byte{0, 0, 0, 5, 'a'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadFrame(bytes.NewReader(tt.in)); err == nil {
				t.Errorf("got nil error, want an error")
			}
		})
	}
	if err := WriteFrame(io.Discard, make([]byte, MaxFrameBytes+1)); err == nil {
		t.Error("got nil error for an oversized frame, want an error")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := ReadFrame(bytes.NewReader(in))
		if err == nil && len(b) > MaxFrameBytes {
			t.Fatalf("frame of %d bytes accepted", len(b))
		}
	})
}

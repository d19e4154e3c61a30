package vmm

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// FuzzConsoleScanner feeds guest console bytes, each chunk from a vCPU
// index that may be out of range, and checks that the output is the input
// unchanged, that no vCPU's line grows past lineMaxBytes, and that a
// reported panic line starts with the marker and is in one
// vCPU's bytes.
func FuzzConsoleScanner(f *testing.F) {
	f.Add([]byte("\x01NITROVM-TEST p\x00[    4.27] Kernel\x01anic=\x00 panic - not syncing: x\r\n\x01now\n"))
	f.Add([]byte("Kernel panic - not syncing: y\n"))
	f.Add([]byte("\xffKernel panic\x02 - not syncing\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		var panics []string
		c := &consoleScanner{out: &out, lines: make([][]byte, 3), onPanic: func(l string) { panics = append(panics, l) }}
		// A byte below 0x03 or above 0xfc switches the vCPU that writes
		// the bytes after it (0xfd-0xff: indexes outside the VM).
		var want []byte
		streams := make([][]byte, 3) // each vCPU's bytes, '\r' left out as the scanner does.
		vcpu, start := 0, 0
		flush := func(end int) {
			c.WriteFrom(vcpu, in[start:end])
			want = append(want, in[start:end]...)
			i := vcpu
			if i < 0 || i >= len(streams) {
				i = 0
			}
			streams[i] = append(streams[i], bytes.ReplaceAll(in[start:end], []byte("\r"), nil)...)
		}
		for i, b := range in {
			if b < 3 || b > 0xfc {
				flush(i)
				vcpu, start = int(b), i+1
				if b > 0xfc {
					vcpu = -int(b)
				}
			}
		}
		flush(len(in))
		c.flush()
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("forwarded %q, want %q", out.Bytes(), want)
		}
		for i, l := range c.lines {
			if len(l) > lineMaxBytes {
				t.Errorf("vCPU %d line: %d bytes, more than %d", i, len(l), lineMaxBytes)
			}
		}
		if len(panics) > 1 {
			t.Errorf("%d panics reported, want at most one", len(panics))
		}
		for _, p := range panics {
			if !strings.HasPrefix(p, panicMarker) || !slices.ContainsFunc(streams, func(s []byte) bool { return bytes.Contains(s, []byte(p)) }) {
				t.Errorf("panic line %q is not in one vCPU's bytes", p)
			}
		}
	})
}

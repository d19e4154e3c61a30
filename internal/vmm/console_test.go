package vmm

import (
	"bytes"
	"strings"
	"testing"
)

func TestConsoleScanner(t *testing.T) {
	tests := []struct {
		name  string
		input []string
		want  []string
	}{
		{"no panic", []string{"hello\n", "world\r\n"}, nil},
		{"panic", []string{"[    1.0] Kernel panic - not syncing: Attempted to kill init!", " exitcode=0x00000100\r\n", "[ 1.1] Kernel panic - not syncing: again\n"},
			[]string{"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"}},
		{"byte at a time", []string{"K", "ernel panic - not syncing: x", "\n"}, []string{"Kernel panic - not syncing: x"}},
		{"unterminated", []string{"Kernel panic - not syncing: x"}, nil},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		var got []string
		c := &consoleScanner{out: &out, onPanic: func(l string) { got = append(got, l) }}
		var all string
		for _, s := range tt.input {
			c.Write([]byte(s))
			all += s
		}
		if out.String() != all {
			t.Errorf("%s: forwarded %q, want %q", tt.name, out.String(), all)
		}
		if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
			t.Errorf("%s: got panics %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestBus(t *testing.T) {
	var b bus
	if err := b.add(0x3f8, 8, sink{}); err != nil {
		t.Fatal(err)
	}
	if err := b.add(0x60, 5, sink{}); err != nil {
		t.Fatal(err)
	}
	if err := b.add(0x3fc, 2, sink{}); err == nil {
		t.Errorf("overlapping add: got nil error, want one")
	}
	tests := []struct {
		addr    uint64
		wantOK  bool
		wantOff uint64
	}{{0x3f8, true, 0}, {0x3ff, true, 7}, {0x400, false, 0}, {0x64, true, 4}, {0x5f, false, 0}, {0x65, false, 0}}
	for _, tt := range tests {
		_, off, ok := b.find(tt.addr)
		if ok != tt.wantOK || off != tt.wantOff {
			t.Errorf("find(%#x): got %#x %v, want %#x %v", tt.addr, off, ok, tt.wantOff, tt.wantOK)
		}
	}
}

func TestSumRSS(t *testing.T) {
	smaps := `00400000-00800000 r-xp 00000000 08:01 1 /bin/nitrovm
Size:               4096 kB
Rss:                3000 kB
7f0000000000-7f0020000000 rw-p 00000000 00:00 0
Size:             524288 kB
Rss:              200000 kB
7f1000000000-7f1000100000 rw-p 00000000 00:00 0
Rss:                 512 kB
`
	got, err := sumRSSKiB(strings.NewReader(smaps), []uint64{512 << 20})
	if err != nil || got != 3512 {
		t.Errorf("sumRSSKiB: got %d, %v, want 3512, nil", got, err)
	}
}

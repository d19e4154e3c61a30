package nested

import (
	"strings"
	"testing"
)

func TestParseQEMUVersion(t *testing.T) {
	tests := []struct {
		out     string
		want    QEMUVersion
		wantErr string
	}{
		{"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright (c) 2003-2025\n", QEMUVersion{10, 0, 2}, ""},
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n", QEMUVersion{7, 2, 22}, ""},
		{"QEMU emulator version 8.2.0\n", QEMUVersion{8, 2, 0}, ""},
		{"QEMU emulator version 9.1\n", QEMUVersion{9, 1, 0}, ""},
		{"nested: L1 ready\n", QEMUVersion{}, "want \"QEMU emulator version X.Y.Z\""},
		{"", QEMUVersion{}, "want"},
		{"QEMU emulator version 10\n", QEMUVersion{}, "bad release number \"10\""},
		{"QEMU emulator version 10.x.1\n", QEMUVersion{}, "bad release number"},
		{"QEMU emulator version 1.2.3.4\n", QEMUVersion{}, "bad release number"},
		{"QEMU emulator version -1.2\n", QEMUVersion{}, "bad release number"},
		{"QEMU emulator version +1.2\n", QEMUVersion{}, "bad release number"},
	}
	for _, tt := range tests {
		got, err := ParseQEMUVersion(tt.out)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseQEMUVersion(%q): got %v, %v; want error containing %q", tt.out, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseQEMUVersion(%q): got %v, %v; want %v", tt.out, got, err, tt.want)
		}
	}
}

func TestQEMUVersionLess(t *testing.T) {
	tests := []struct {
		v, w QEMUVersion
		want bool
	}{
		{QEMUVersion{7, 2, 22}, MinQEMU(), true},
		{QEMUVersion{8, 1, 9}, MinQEMU(), true},
		{QEMUVersion{8, 2, 0}, MinQEMU(), false},
		{QEMUVersion{10, 0, 2}, MinQEMU(), false},
		{QEMUVersion{8, 2, 1}, QEMUVersion{8, 2, 2}, true},
	}
	for _, tt := range tests {
		if got := tt.v.Less(tt.w); got != tt.want {
			t.Errorf("%v.Less(%v): got %v, want %v", tt.v, tt.w, got, tt.want)
		}
	}
}

func FuzzParseQEMUVersion(f *testing.F) {
	f.Add("QEMU emulator version 10.0.2 (Debian)\n")
	f.Add("QEMU emulator version 7.2\n")
	f.Fuzz(func(t *testing.T, out string) {
		v, err := ParseQEMUVersion(out)
		if err != nil {
			return
		}
		if v.Major < 0 || v.Minor < 0 || v.Micro < 0 {
			t.Fatalf("negative version %v from %q", v, out)
		}
		again, err := ParseQEMUVersion(versionPrefix + v.String())
		if err != nil || again != v {
			t.Fatalf("round trip of %v: got %v, %v", v, again, err)
		}
	})
}

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPCRCmd(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.WriteFile(data, []byte("hello"), 0o644)
	notPEM := filepath.Join(dir, "x.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string // stdout on success, stderr otherwise
	}{
		{"input", []string{"pcr", "--input", data}, 0, `{` + "\n" + `  "PCR": "` + refPCR([]byte("hello")) + `"` + "\n}\n"},
		{"neither flag", []string{"pcr"}, 2, "one of --input or --signing-certificate is required"},
		{"both flags", []string{"pcr", "--input", data, "--signing-certificate", data}, 2, "mutually exclusive"},
		{"missing input", []string{"pcr", "--input", filepath.Join(dir, "nope")}, 19, "[ E19 ]"},
		{"missing certificate", []string{"pcr", "--signing-certificate", filepath.Join(dir, "nope")}, 19, "no such file"},
		{"not a certificate", []string{"pcr", "--signing-certificate", notPEM}, 57, "[ E57 ]"},
		{"stray argument", []string{"pcr", "extra"}, 1, "unknown command"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runEIFCmd(t, nil, tt.args...)
		got := stderr
		if tt.code == 0 {
			got = stdout
		}
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("%s: got exit %d, stdout %q, stderr %q; want exit %d and %q", tt.name, code, stdout, stderr, tt.code, tt.want)
		}
	}
}

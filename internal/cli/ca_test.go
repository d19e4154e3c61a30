package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/ca"
)

func TestCACmd(t *testing.T) {
	state := t.TempDir()
	code, pemOut, errOut := runAtt(t, state, "ca", "export")
	if code != 0 || !strings.HasPrefix(pemOut, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("export: exit %d, stdout %q, stderr %q", code, pemOut, errOut)
	}
	if st, err := os.Stat(filepath.Join(state, "ca", ca.StateFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("state file: got %v (%v), want mode 600", st, err)
	}
	// Export is stable until rotate.
	if _, again, _ := runAtt(t, state, "ca", "export"); again != pemOut {
		t.Error("second export: got a different root, want the same")
	}
	code, out, _ := runAtt(t, state, "ca", "describe")
	var info struct {
		StateDir             string
		Root, Regional, Inst struct{ Subject, SHA256Fingerprint string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || !strings.Contains(info.Root.Subject, "not AWS") {
		t.Errorf("describe: exit %d, got %s", code, out)
	}
	code, out, _ = runAtt(t, state, "ca", "rotate")
	var rotated struct {
		Root struct{ SHA256Fingerprint string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &rotated) != nil || rotated.Root.SHA256Fingerprint == info.Root.SHA256Fingerprint {
		t.Errorf("rotate: exit %d, got %s, want a new root", code, out)
	}
	if _, after, _ := runAtt(t, state, "ca", "export"); after == pemOut {
		t.Error("export after rotate: got the old root, want the new one")
	}
	outFile := filepath.Join(t.TempDir(), "root.pem")
	if code, out, _ := runAtt(t, state, "ca", "export", "--out", outFile); code != 0 || !strings.Contains(out, outFile) {
		t.Errorf("export --out: exit %d, got %s", code, out)
	}
	if b, err := os.ReadFile(outFile); err != nil || !strings.HasPrefix(string(b), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("export --out file: got %q (%v)", b, err)
	}
}

func TestCACmdErrors(t *testing.T) {
	state := t.TempDir()
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		state string
		args  []string
		want  string
	}{
		{"no subcommand", state, []string{"ca"}, "missing subcommand"},
		{"extra arg", state, []string{"ca", "export", "x"}, "unknown command"},
		{"unwritable out", state, []string{"ca", "export", "--out", "/nonexistent/dir/root.pem"}, "write root certificate"},
		{"state dir is a file", blocker, []string{"ca", "export"}, "create state directory"},
		{"rotate in bad dir", blocker, []string{"ca", "rotate"}, "create state directory"},
		{"describe in bad dir", blocker, []string{"ca", "describe"}, "create state directory"},
		{"no state dir", "", []string{"ca", "export"}, "no state directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runAtt(t, tt.state, tt.args...)
			if code == 0 || !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("got exit %d, %q, want failure with one line containing %q", code, errOut, tt.want)
			}
		})
	}
}

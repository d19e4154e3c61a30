package cli

import (
	"path/filepath"
	"testing"
)

// TestBuildEnclaveTrustLocalCA checks that --trust-local-ca changes the
// image's files (PCR0, PCR2) and nothing in the boot ramdisk (PCR1).
func TestBuildEnclaveTrustLocalCA(t *testing.T) {
	f := newBuildFixture(t)
	env := map[string]string{"NITROVM_STATE_DIR": t.TempDir()}
	build := func(out string, extra ...string) map[string]string {
		args := append([]string{"--image-tar", f.img, "--kernel", f.kernel, "--init", f.init, "--output-file", out}, extra...)
		code, stdout, stderr := runBuild(t, env, args...)
		if code != 0 {
			t.Fatalf("build-enclave %v: exit %d: %s", extra, code, stderr)
		}
		return measurements(t, stdout)
	}
	plain := build(filepath.Join(f.dir, "plain.eif"))
	trusting := build(filepath.Join(f.dir, "ca.eif"), "--trust-local-ca")
	if plain["PCR0"] == trusting["PCR0"] || plain["PCR2"] == trusting["PCR2"] {
		t.Errorf("--trust-local-ca kept PCR0 or PCR2: got %v, without it %v", trusting, plain)
	}
	if plain["PCR1"] != trusting["PCR1"] {
		t.Errorf("--trust-local-ca changed PCR1: got %s, want %s", trusting["PCR1"], plain["PCR1"])
	}
}

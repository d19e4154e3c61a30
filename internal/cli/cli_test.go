package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/eif"
)

// runAs runs the command line as prog and returns stdout, stderr, status.
func runAs(prog string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{prog}, args...), Env{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

// TestVersion: as nitro-cli, --version and -V print nitro-cli's line,
// clap's "Nitro CLI <version>" (aws-nitro-enclaves-cli create_app!), with
// nitrovm's version after it; as nitrovm, "nitrovm <version>".
func TestVersion(t *testing.T) {
	nitroCLI := regexp.MustCompile(`^Nitro CLI \d+\.\d+\.\d+ \(nitrovm \S+\)\n$`)
	nitrovm := regexp.MustCompile(`^nitrovm \S+\n$`)
	tests := []struct {
		prog string
		args []string
		want *regexp.Regexp
	}{
		{"nitro-cli", []string{"--version"}, nitroCLI},
		{"nitro-cli", []string{"-V"}, nitroCLI},
		{"/usr/bin/nitro-cli", []string{"--version"}, nitroCLI},
		{"nitrovm", []string{"--version"}, nitrovm},
		{"nitrovm", []string{"-V"}, nitrovm},
		{"nitrovm", []string{"version"}, nitrovm},
	}
	for _, tt := range tests {
		out, errOut, code := runAs(tt.prog, tt.args...)
		if code != 0 || errOut != "" || !tt.want.MatchString(out) {
			t.Errorf("%s %v: got status %d, stdout %q, stderr %q; want 0 and %v", tt.prog, tt.args, code, out, errOut, tt.want)
		}
	}
}

// TestErrorPrefix: every error line starts with the program name once, the
// way it was invoked.
func TestErrorPrefix(t *testing.T) {
	tests := []struct {
		prog string
		args []string
		code int
		want string
	}{
		{"nitro-cli", []string{"--bogus"}, 2, "nitro-cli: unknown flag: --bogus (see 'nitro-cli --help')\n"},
		{"nitro-cli", []string{"run-enclave", "--bogus"}, 2, "nitro-cli: run-enclave: unknown flag: --bogus (see 'nitro-cli run-enclave --help')\n"},
		{"nitrovm", []string{"run-enclave", "--bogus"}, 2, "nitrovm: run-enclave: unknown flag: --bogus (see 'nitrovm run-enclave --help')\n"},
		{"nitro-cli", []string{"describe-enclaves", "x"}, 2, "nitro-cli: describe-enclaves: unexpected arguments [\"x\"] (see 'nitro-cli describe-enclaves --help')\n"},
		{"nitro-cli", []string{"attestation", "issue", "--bogus"}, 2, "nitro-cli: attestation issue: unknown flag: --bogus (see 'nitro-cli attestation issue --help')\n"},
		{"nitrovm", []string{"ca"}, 2, "nitrovm: ca: missing subcommand (export, rotate, describe) (see 'nitrovm ca --help')\n"},
		{"nitrovm", []string{"kms"}, 2, "nitrovm: kms: missing subcommand (serve, call) (see 'nitrovm kms --help')\n"},
		{"nitro-cli", []string{"frob"}, 1, "nitro-cli: error: unknown command \"frob\" for \"nitro-cli\"\n"},
	}
	for _, tt := range tests {
		_, errOut, code := runAs(tt.prog, tt.args...)
		if code != tt.code || errOut != tt.want {
			t.Errorf("%s %v: got status %d, stderr %q; want %d, %q", tt.prog, tt.args, code, errOut, tt.code, tt.want)
		}
		if n := strings.Count(errOut, tt.prog+":"); n != 1 {
			t.Errorf("%s %v: %q carries the prefix %d times, want once", tt.prog, tt.args, errOut, n)
		}
	}
}

// TestBuildEnclaveGolden: build-enclave's measurements object prints as
// nitro-cli's documented signed build does (jsonout/testdata/nitro-cli).
func TestBuildEnclaveGolden(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(nitroCLIGolden, "build-enclave-signed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Measurements map[string]string }
	if err := json.Unmarshal(want, &doc); err != nil {
		t.Fatal(err)
	}
	pcr := func(k string) []byte {
		b, err := hex.DecodeString(doc.Measurements[k])
		if err != nil || len(b) != 48 {
			t.Fatalf("golden %s: %v", k, err)
		}
		return b
	}
	m := &eif.Measurements{PCR0: pcr("PCR0"), PCR1: pcr("PCR1"), PCR2: pcr("PCR2"), PCR8: pcr("PCR8")}
	var got bytes.Buffer
	if err := writeJSON(&got, struct {
		Measurements *eif.Measurements `json:"Measurements"`
	}{m}); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("got\n%s\nwant\n%s", got.String(), want)
	}
}

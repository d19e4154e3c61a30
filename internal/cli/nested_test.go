package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestNestedEnvFlag(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		wantCode int
		wantErr  string
	}{
		// Valid --env values pass validation; the run then fails on the
		// missing nitrovm binary (exit 1), not on --env (exit 2).
		{"valid", []string{"A=1", "B=x=y", "C="}, 1, "/nonexistent/nitrovm"},
		{"no equals", []string{"A"}, 2, `env "A": want K=V (--env K=V)`},
		{"empty name", []string{"A=1", "=v"}, 2, `env "=v": empty name`},
		{"newline", []string{"A=1\n2"}, 2, `env "A=1\n2": contains NUL or newline`},
		{"NUL", []string{"A\x00=1"}, 2, `env "A\x00=1": contains NUL or newline`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"nitrovm", "nested", "--nitrovm", "/nonexistent/nitrovm"}
			for _, e := range tt.env {
				args = append(args, "--env", e)
			}
			args = append(args, "--", "true")
			var out, errb bytes.Buffer
			code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
			if code != tt.wantCode {
				t.Errorf("exit code: got %v, want %v (stderr %q)", code, tt.wantCode, errb.String())
			}
			if got := errb.String(); !strings.Contains(got, tt.wantErr) {
				t.Errorf("stderr: got %v, want it to contain %v", got, tt.wantErr)
			}
			if got := strings.TrimRight(errb.String(), "\n"); strings.Contains(got, "\n") {
				t.Errorf("stderr: got %q, want one line", got)
			}
		})
	}
}

func TestNestedCPU0Flags(t *testing.T) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"nitrovm", "nested", "--nitrovm", "/nonexistent/nitrovm", "--command-on-cpu0", "--only-vcpus-off-cpu0", "--", "true"},
		Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	if want := "--command-on-cpu0 and --only-vcpus-off-cpu0 exclude each other"; code != 2 || !strings.Contains(errb.String(), want) {
		t.Errorf("got %d %q, want 2 and %q", code, errb.String(), want)
	}
}

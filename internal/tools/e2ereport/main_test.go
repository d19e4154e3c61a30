package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/internal/e2elog"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	os.WriteFile(good, []byte(`{"test":"TestA","attempt":1,"result":"pass","seconds":3}`+"\n"), 0o644)
	rerun := filepath.Join(dir, "rerun.jsonl")
	os.WriteFile(rerun, []byte(`{"test":"TestA","attempt":1,"result":"rerun","class":"l1-state-in-guest","evidence":"b: vcpu 0 WARNING cr3=0x101e64000","seconds":9}`+"\n"+
		`{"test":"TestA","attempt":2,"result":"pass","seconds":3}`+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("garbage\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"pass", []string{good}, 0, "TestA", ""},
		{"missing expected test", []string{"-expect", "TestA, TestB", good}, 1, "TestB", ""},
		{"state-in-guest rerun", []string{rerun}, 0, fmt.Sprintf("reruns: 1 of at most %d (l1-state-in-guest 1): ok", e2elog.DefaultMaxReruns), ""},
		{"state-in-guest rerun past the cap", []string{"-max-reruns", "0", rerun}, 1, "too many", ""},
		{"no log yet", []string{filepath.Join(dir, "none.jsonl")}, 0, "reruns: 0", ""},
		{"malformed", []string{bad}, 1, "", "e2ereport: e2e log line 1"},
		{"no argument", nil, 2, "", "want exactly one argument"},
		{"bad flag", []string{"-nope", good}, 2, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb strings.Builder
			if code := run(tt.args, &out, &errb); code != tt.code {
				t.Errorf("exit: got %d, want %d (stderr %q)", code, tt.code, errb.String())
			}
			if !strings.Contains(out.String(), tt.out) || !strings.Contains(errb.String(), tt.err) {
				t.Errorf("got stdout %q, stderr %q; want %q and %q", out.String(), errb.String(), tt.out, tt.err)
			}
		})
	}
}

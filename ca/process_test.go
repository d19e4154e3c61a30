package ca

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestConcurrentProcesses starts several processes creating the CA in one
// directory at once, as simultaneously started enclaves do; all must report
// the same root.
func TestConcurrentProcesses(t *testing.T) {
	if dir := os.Getenv("NITROVM_CA_TEST_CHILD"); dir != "" {
		c, err := LoadOrCreate(dir, Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fp := sha256.Sum256(c.Root.Raw)
		fmt.Println(hex.EncodeToString(fp[:]))
		os.Exit(0)
	}
	dir := t.TempDir()
	const n = 4
	cmds := make([]*exec.Cmd, n)
	outs := make([]strings.Builder, n)
	for i := range n {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestConcurrentProcesses$")
		cmds[i].Env = append(os.Environ(), "NITROVM_CA_TEST_CHILD="+dir)
		cmds[i].Stdout = &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := cmds[i].Wait(); err != nil {
			t.Fatalf("child %d: %v: %s", i, err, outs[i].String())
		}
	}
	first := strings.TrimSpace(outs[0].String())
	for i := range n {
		if got := strings.TrimSpace(outs[i].String()); got != first || len(got) != 64 {
			t.Errorf("child %d: got root %q, want %q", i, got, first)
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/enclave/enclavetest"
)

var updateLifecycle = flag.Bool("update-lifecycle", false, "rewrite testdata/lifecycle golden files")

// lifecycleEnv is a nitro-cli environment on a private state directory
// whose supervisors are this test binary (see TestMain).
type lifecycleEnv struct {
	t        *testing.T
	stateDir string
	vars     map[string]string
}

func newLifecycleEnv(t *testing.T) *lifecycleEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "nvmcli") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	e := &lifecycleEnv{t: t, stateDir: dir, vars: map[string]string{
		"NITROVM_STATE_DIR": dir,
		"NITROVM_CPU_POOL":  "1-16",
	}}
	t.Cleanup(func() {
		e.run("terminate-enclave", "--all")
		os.RemoveAll(dir)
	})
	return e
}

// run runs nitro-cli with args and returns stdout, stderr and the status.
func (e *lifecycleEnv) run(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	env := Env{
		Stdout: &out, Stderr: &errb,
		Getenv:     func(k string) string { return e.vars[k] },
		Executable: os.Args[0],
	}
	code := Run(context.Background(), append([]string{"nitro-cli"}, args...), env)
	return out.String(), errb.String(), code
}

var pidPattern = regexp.MustCompile(`"ProcessID": [0-9]+`)

// golden compares got, with process IDs zeroed, to testdata/lifecycle/name.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = pidPattern.ReplaceAllString(got, `"ProcessID": 0`)
	path := filepath.Join("testdata", "lifecycle", name)
	if *updateLifecycle {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

func TestLifecycleCommands(t *testing.T) {
	e := newLifecycleEnv(t)
	tmp := t.TempDir()
	eifA := enclavetest.WriteEIF(t, tmp, "alpha.eif", "fake.console=hello_from_alpha", eif.ArchX86_64, 'a')
	eifB := enclavetest.WriteEIF(t, tmp, "beta.eif", "", eif.ArchX86_64, 'b')
	config := filepath.Join(tmp, "alpha.json")
	os.WriteFile(config, []byte(`{"eif_path":"`+eifA+`","memory_mib":128,"cpu_count":2,"debug_mode":true,"enclave_cid":0}`), 0o644)

	out, errOut, code := e.run("run-enclave", "--config", config)
	if code != 0 {
		t.Fatalf("run-enclave alpha: status %d, stderr %q", code, errOut)
	}
	golden(t, "run-enclave-alpha.json", out)
	wantErr := "The enclave CID will be auto-generated as the provided CID is 0\nStart allocating memory...\nStarted enclave with enclave-cid: 16, memory: 128 MiB, cpu-ids: [1, 2]\n"
	if errOut != wantErr {
		t.Errorf("run-enclave alpha stderr: got %q, want %q", errOut, wantErr)
	}
	out, errOut, code = e.run("run-enclave", "--eif-path", eifB, "--memory", "1G", "--cpu-ids", "3", "5", "--enclave-cid", "23", "--enclave-name", "beta", "--parent-id", "i-0123456789abcdef0")
	if code != 0 {
		t.Fatalf("run-enclave beta: status %d, stderr %q", code, errOut)
	}
	golden(t, "run-enclave-beta.json", out)

	out, errOut, code = e.run("describe-enclaves")
	if code != 0 {
		t.Fatalf("describe-enclaves: status %d, stderr %q", code, errOut)
	}
	golden(t, "describe-enclaves.json", out)
	outMeta, errOut, code := e.run("describe-enclaves", "--metadata")
	if code != 0 {
		t.Fatalf("describe-enclaves --metadata: status %d, stderr %q", code, errOut)
	}
	golden(t, "describe-enclaves-metadata.json", outMeta)
	var described []map[string]any
	if err := json.Unmarshal([]byte(out), &described); err != nil || len(described) != 2 {
		t.Fatalf("describe-enclaves: got %v (%d entries), want 2 entries", err, len(described))
	}
	for i, p := range []string{eifA, eifB} {
		f, err := eif.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := f.Measure()
		f.Close()
		if got, want := described[i]["Measurements"].(map[string]any)["PCR0"], fmt.Sprintf("%x", m.PCR0); got != want {
			t.Errorf("enclave %d PCR0: got %v, want %v", i, got, want)
		}
	}

	out, errOut, code = e.run("console", "--enclave-id", "i-0000000000000000-enc1", "--disconnect-timeout", "1")
	if code != 0 || !strings.HasPrefix(out, "Successfully connected to the console.\n") || !strings.Contains(out, "hello from alpha") {
		t.Errorf("console alpha: status %d, stdout %q, stderr %q; want the greeting and the console text", code, out, errOut)
	}
	_, errOut, code = e.run("console", "--enclave-name", "beta")
	if code != 44 || !strings.HasPrefix(errOut, "[ E44 ] Enclave console connection failure.") {
		t.Errorf("console beta: got status %d, stderr %q, want 44 and an E44 message", code, errOut)
	}

	out, errOut, code = e.run("terminate-enclave", "--enclave-name", "beta")
	if code != 0 || errOut != "Successfully terminated enclave i-0123456789abcdef0-enc2.\n" {
		t.Errorf("terminate beta: status %d, stderr %q", code, errOut)
	}
	golden(t, "terminate-enclave.json", out)
	out, _, code = e.run("terminate-enclave", "--all")
	if code != 0 {
		t.Errorf("terminate --all: status %d", code)
	}
	golden(t, "terminate-enclave-all.json", out)
	out, _, _ = e.run("describe-enclaves")
	if out != "[]\n" {
		t.Errorf("describe-enclaves after terminate: got %q, want []", out)
	}
}

func TestRunEnclaveConcurrent(t *testing.T) {
	e := newLifecycleEnv(t)
	p := enclavetest.WriteEIF(t, t.TempDir(), "same.eif", "fake.boot=50ms", eif.ArchX86_64, 's')
	const n = 8
	outs := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], _, codes[i] = e.run("run-enclave", "--eif-path", p, "--memory", "64", "--cpu-count", "2")
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if codes[i] != 0 {
			t.Fatalf("run %d: status %d", i, codes[i])
		}
		var r struct {
			EnclaveName, EnclaveID string
			EnclaveCID             uint64
			CPUIDs                 []uint32
		}
		if err := json.Unmarshal([]byte(outs[i]), &r); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		keys := []string{"name " + r.EnclaveName, "id " + r.EnclaveID, fmt.Sprint("cid ", r.EnclaveCID)}
		for _, c := range r.CPUIDs {
			keys = append(keys, fmt.Sprint("cpu ", c))
		}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("run %d: %s given twice", i, k)
			}
			seen[k] = true
		}
	}
	out, _, _ := e.run("describe-enclaves")
	var list []any
	json.Unmarshal([]byte(out), &list)
	if len(list) != n {
		t.Errorf("describe-enclaves: got %d enclaves, want %d", len(list), n)
	}
}

func TestLifecycleErrors(t *testing.T) {
	e := newLifecycleEnv(t)
	tmp := t.TempDir()
	good := enclavetest.WriteEIF(t, tmp, "good.eif", "", eif.ArchX86_64, 'g')
	arm := enclavetest.WriteEIF(t, tmp, "arm.eif", "", eif.ArchARM64, 'r')
	panics := enclavetest.WriteEIF(t, tmp, "panic.eif", "fake.panic", eif.ArchX86_64, 'p')
	conf := func(name, body string) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	noCPU := conf("nocpu.json", `{"eif_path":"`+good+`","memory_mib":64}`)
	bothCPU := conf("both.json", `{"eif_path":"`+good+`","memory_mib":64,"cpu_count":1,"cpu_ids":[1]}`)
	badJSON := conf("bad.json", `{`)
	zeroCPU := conf("zero.json", `{"eif_path":"`+good+`","memory_mib":64,"cpu_count":0}`)

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no eif", []string{"run-enclave", "--memory", "64", "--cpu-count", "1"}, 1, "[ E01 ] Missing mandatory argument. User did not provide the `eif-path` argument."},
		{"no memory", []string{"run-enclave", "--eif-path", good, "--cpu-count", "1"}, 1, "`memory` argument"},
		{"no cpus", []string{"run-enclave", "--eif-path", good, "--memory", "64"}, 1, "`cpu-count` or `cpu-ids`"},
		{"bad memory", []string{"run-enclave", "--eif-path", good, "--memory", "12K", "--cpu-count", "1"}, 3, "valid size indicator"},
		{"bad cpu count", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "x"}, 3, "`cpu-count` is not a valid integer (`x`)"},
		{"zero cpu count", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "0"}, 3, "`cpu-count`"},
		{"bad cpu id", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-ids", "a"}, 3, "`cpu-id` is not a valid integer"},
		{"both cpu forms", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--cpu-ids", "1"}, 2, "[ E02 ]"},
		{"duplicate cpu", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-ids", "1,1"}, 20, "[ E20 ] Invalid CPU configuration"},
		{"cpu not in pool", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-ids", "17"}, 21, "[ E21 ] No such CPU available in the pool"},
		{"too many cpus", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "17"}, 22, "[ E22 ] Insufficient CPUs"},
		{"small memory", []string{"run-enclave", "--eif-path", good, "--memory", "32", "--cpu-count", "1"}, 26, "[ E26 ] Insufficient memory requested"},
		{"too much memory", []string{"run-enclave", "--eif-path", good, "--memory", "1T", "--cpu-count", "1"}, 27, "[ E27 ] Insufficient memory available"},
		{"parent cid", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--enclave-cid", "3"}, 3, "CID 3 is the CID of the parent VM"},
		{"bad cid", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--enclave-cid", "x"}, 3, "`enclave-cid`"},
		{"missing eif", []string{"run-enclave", "--eif-path", filepath.Join(tmp, "none.eif"), "--memory", "64", "--cpu-count", "1"}, 19, "[ E19 ]"},
		{"arm eif", []string{"run-enclave", "--eif-path", arm, "--memory", "64", "--cpu-count", "1"}, 35, "built for aarch64"},
		{"kernel panic", []string{"run-enclave", "--eif-path", panics, "--memory", "64", "--cpu-count", "1"}, 36, "[ E36 ] Waiting on enclave to boot failed"},
		{"bad forward", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--forward", "nope"}, 3, "`forward`"},
		{"bad kms endpoint", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--kms-endpoint", "nope"}, 3, "`kms-endpoint` is not HOST:PORT"},
		{"kms twice", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--kms", "--kms-endpoint", "127.0.0.1:1"}, 3, "Give --kms or --kms-endpoint, not both"},
		{"bad publish", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--publish", "nope"}, 3, "`publish`"},
		{"bad heartbeat", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--heartbeat-timeout", "soon"}, 3, "`heartbeat-timeout`"},
		{"stray argument", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "extra"}, 2, "unexpected arguments"},
		{"bad seccomp action", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--seccomp-action", "allow"}, 3, "`seccomp-action` is not valid"},
		{"bad uid", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--uid", "no-such-user-xyz"}, 3, "no-such-user-xyz"},
		{"root uid", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--uid", "0"}, 3, "must not be root"},
		{"missing cgroup", []string{"run-enclave", "--eif-path", good, "--memory", "64", "--cpu-count", "1", "--cgroup", "/nonexistent-nitrovm-cg"}, 3, "--cgroup /nonexistent-nitrovm-cg: "},
		{"config conflict", []string{"run-enclave", "--config", noCPU, "--memory", "64"}, 2, "`config` and `memory`"},
		{"config no cpus", []string{"run-enclave", "--config", noCPU}, 1, "Missing both `cpu-count` and `cpu-ids`"},
		{"config both cpus", []string{"run-enclave", "--config", bothCPU}, 2, "cannot be used together"},
		{"config bad json", []string{"run-enclave", "--config", badJSON}, 3, "Invalid JSON format"},
		{"config zero cpus", []string{"run-enclave", "--config", zeroCPU}, 3, "`cpu-count`"},
		{"config missing", []string{"run-enclave", "--config", filepath.Join(tmp, "none.json")}, 19, "Failed to open config file"},
		{"terminate nothing", []string{"terminate-enclave"}, 1, "[ E01 ]"},
		{"terminate two ways", []string{"terminate-enclave", "--all", "--enclave-id", "x"}, 2, "[ E02 ]"},
		{"terminate unknown id", []string{"terminate-enclave", "--enclave-id", "i-0000000000000000-enc99"}, 11, "[ E11 ]"},
		{"terminate unknown name", []string{"terminate-enclave", "--enclave-name", "ghost"}, 58, "[ E58 ] No enclave matched the given name."},
		{"console nothing", []string{"console"}, 1, "[ E01 ]"},
		{"console two ways", []string{"console", "--enclave-id", "a", "--enclave-name", "b"}, 2, "[ E02 ]"},
		{"console bad timeout", []string{"console", "--enclave-id", "a", "--disconnect-timeout", "x"}, 3, "`disconnect-timeout`"},
		{"console unknown", []string{"console", "--enclave-id", "i-0000000000000000-enc99"}, 11, "[ E11 ]"},
		{"describe args", []string{"describe-enclaves", "x"}, 2, "unexpected arguments"},
	}
	for _, tt := range tests {
		_, errOut, code := e.run(tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.msg) {
			t.Errorf("%s: got status %d, stderr %q, want %d containing %q", tt.name, code, errOut, tt.code, tt.msg)
		}
	}
	out, _, _ := e.run("describe-enclaves")
	if out != "[]\n" {
		t.Errorf("describe-enclaves after failures: got %q, want []", out)
	}

	e.vars["NITROVM_CPU_POOL"] = "x"
	if _, errOut, code := e.run("describe-enclaves"); code != 3 || !strings.Contains(errOut, "NITROVM_CPU_POOL") {
		t.Errorf("bad CPU pool: got status %d, stderr %q, want 3", code, errOut)
	}
}

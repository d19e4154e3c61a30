package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/enclave/enclavetest"
)

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

// nitroCLIGolden is the directory of nitro-cli's output transcribed from
// its documentation and source (see its SOURCES.md).
const nitroCLIGolden = "jsonout/testdata/nitro-cli"

// sameShape fails unless the JSON document got has the shape of nitro-cli's
// golden file: the same keys in the same order with values of the same
// JSON types, arrays compared by their first element. Keys named in extra
// may appear in got only (nitrovm's additions, listed in SOURCES.md).
func sameShape(t *testing.T, what, got, golden string, extra ...string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(nitroCLIGolden, golden))
	if err != nil {
		t.Fatal(err)
	}
	g, err := jsonShape(got)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, got)
	}
	w, err := jsonShape(string(want))
	if err != nil {
		t.Fatalf("%s: %v", golden, err)
	}
	var kept []string
	for _, p := range g {
		drop := false
		for _, x := range extra {
			drop = drop || strings.Contains(p, "."+x+":") || strings.Contains(p, "."+x+".")
		}
		if !drop {
			kept = append(kept, p)
		}
	}
	if strings.Join(kept, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s: not the shape of nitro-cli's %s:\ngot\n%s\nwant\n%s", what, golden, strings.Join(kept, "\n"), strings.Join(w, "\n"))
	}
}

// jsonShape returns "path:type" for every value of a JSON document in
// order, object keys as ".Key" and array elements as "[]", each distinct
// path once.
func jsonShape(doc string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var out []string
	seen := map[string]bool{}
	add := func(p, typ string) {
		if !seen[p+":"+typ] {
			seen[p+":"+typ] = true
			out = append(out, p+":"+typ)
		}
	}
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' {
				add(path, "object")
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return err
					}
					if err := walk(path + "." + k.(string)); err != nil {
						return err
					}
				}
			} else {
				add(path, "array")
				for dec.More() {
					if err := walk(path + "[]"); err != nil {
						return err
					}
				}
			}
			_, err = dec.Token() // the closing delimiter
			return err
		case string:
			add(path, "string")
		case json.Number:
			add(path, "number")
		case bool:
			add(path, "bool")
		case nil:
			add(path, "null")
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	return out, nil
}

// lifecycleView is what TestLifecycleCommands checks of a run-enclave or
// describe-enclaves entry, besides its shape.
type lifecycleView struct {
	EnclaveName, EnclaveID, State, Flags string
	EnclaveCID, MemoryMiB                uint64
	NumberOfCPUs                         int
	CPUIDs                               []uint32
	BootTimeMs                           *int64
	ImageName                            *string
}

func decodeView(t *testing.T, what, doc string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(doc), v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, doc)
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
	sameShape(t, "run-enclave alpha", out, "run-enclave.json")
	var alpha lifecycleView
	decodeView(t, "run-enclave alpha", out, &alpha)
	if want := (lifecycleView{EnclaveName: "alpha", EnclaveID: "i-0000000000000000-enc1", EnclaveCID: 16, MemoryMiB: 128, NumberOfCPUs: 2, CPUIDs: []uint32{1, 2}}); fmt.Sprint(alpha) != fmt.Sprint(want) {
		t.Errorf("run-enclave alpha: got %+v, want %+v", alpha, want)
	}
	wantErr := "The enclave CID will be auto-generated as the provided CID is 0\nStart allocating memory...\nStarted enclave with enclave-cid: 16, memory: 128 MiB, cpu-ids: [1, 2]\nenclave booted in N ms\n"
	if got := regexp.MustCompile(`booted in [1-9][0-9]* ms`).ReplaceAllString(errOut, "booted in N ms"); got != wantErr {
		t.Errorf("run-enclave alpha stderr: got %q, want %q", errOut, wantErr)
	}
	out, errOut, code = e.run("run-enclave", "--eif-path", eifB, "--memory", "1G", "--cpu-ids", "3", "5", "--enclave-cid", "23", "--enclave-name", "beta", "--parent-id", "i-0123456789abcdef0")
	if code != 0 {
		t.Fatalf("run-enclave beta: status %d, stderr %q", code, errOut)
	}
	sameShape(t, "run-enclave beta", out, "run-enclave.json")
	var beta lifecycleView
	decodeView(t, "run-enclave beta", out, &beta)
	if want := (lifecycleView{EnclaveName: "beta", EnclaveID: "i-0123456789abcdef0-enc2", EnclaveCID: 23, MemoryMiB: 1024, NumberOfCPUs: 2, CPUIDs: []uint32{3, 5}}); fmt.Sprint(beta) != fmt.Sprint(want) {
		t.Errorf("run-enclave beta: got %+v, want %+v", beta, want)
	}

	out, errOut, code = e.run("describe-enclaves")
	if code != 0 {
		t.Fatalf("describe-enclaves: status %d, stderr %q", code, errOut)
	}
	// nitro-cli prints Measurements too (EnclaveDescribeInfo.build_info),
	// which the documented example predates.
	sameShape(t, "describe-enclaves", out, "describe-enclaves.json", "Measurements")
	outMeta, errOut, code := e.run("describe-enclaves", "--metadata")
	if code != 0 {
		t.Fatalf("describe-enclaves --metadata: status %d, stderr %q", code, errOut)
	}
	sameShape(t, "describe-enclaves --metadata", outMeta, "describe-enclaves-metadata.json", "BootTimeMs")
	var views []lifecycleView
	decodeView(t, "describe-enclaves --metadata", outMeta, &views)
	if len(views) != 2 {
		t.Fatalf("describe-enclaves --metadata: got %d enclaves, want 2", len(views))
	}
	for i, want := range []lifecycleView{
		{EnclaveName: "alpha", EnclaveID: "i-0000000000000000-enc1", State: "RUNNING", Flags: "DEBUG_MODE", EnclaveCID: 16, MemoryMiB: 128, NumberOfCPUs: 2, CPUIDs: []uint32{1, 2}},
		{EnclaveName: "beta", EnclaveID: "i-0123456789abcdef0-enc2", State: "RUNNING", Flags: "NONE", EnclaveCID: 23, MemoryMiB: 1024, NumberOfCPUs: 2, CPUIDs: []uint32{3, 5}},
	} {
		got := views[i]
		if got.BootTimeMs == nil || *got.BootTimeMs <= 0 || got.ImageName == nil {
			t.Errorf("enclave %d: BootTimeMs %v, ImageName %v; want both set", i, got.BootTimeMs, got.ImageName)
		}
		got.BootTimeMs, got.ImageName = nil, nil
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("enclave %d: got %+v, want %+v", i, got, want)
		}
	}
	if strings.Contains(out, "BootTimeMs") {
		t.Errorf("describe-enclaves without --metadata prints BootTimeMs:\n%s", out)
	}
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
	sameShape(t, "terminate-enclave beta", out, "terminate-enclave.json")
	if want := "{\n  \"EnclaveName\": \"beta\",\n  \"EnclaveID\": \"i-0123456789abcdef0-enc2\",\n  \"Terminated\": true\n}\n"; out != want {
		t.Errorf("terminate-enclave beta: got %q, want %q", out, want)
	}
	out, _, code = e.run("terminate-enclave", "--all")
	if code != 0 {
		t.Errorf("terminate --all: status %d", code)
	}
	// nitro-cli prints one EnclaveTerminateInfo per enclave, in an array
	// (src/lib.rs terminate_all_enclaves: print_as_vec).
	if want := "[\n  {\n    \"EnclaveName\": \"alpha\",\n    \"EnclaveID\": \"i-0000000000000000-enc1\",\n    \"Terminated\": true\n  }\n]\n"; out != want {
		t.Errorf("terminate-enclave --all: got %q, want %q", out, want)
	}
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
	expired := expiredSignedEIF(t, tmp)
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
		{"expired signing certificate", []string{"run-enclave", "--eif-path", expired, "--memory", "64", "--cpu-count", "1"}, 59, "[ E59 ] Invalid signing certificate: eif: the signing certificate is valid from 2020-01-01T00:00:00Z to 2021-01-01T00:00:00Z"},
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
	e.vars["NITROVM_CPU_POOL"] = "1-16"
	e.vars["NITROVM_VCPU_CPUS"] = "1,x"
	if _, errOut, code := e.run("run-enclave", "--eif-path", "none.eif", "--cpu-count", "2", "--memory", "128"); code != 3 || !strings.Contains(errOut, "NITROVM_VCPU_CPUS: invalid CPU list entry") {
		t.Errorf("bad vCPU CPUs: got status %d, stderr %q, want 3", code, errOut)
	}
	// Well formed, but no CPU this process may use (1023 on any test host
	// here): refused before a supervisor starts.
	e.vars["NITROVM_VCPU_CPUS"] = "1023"
	if _, errOut, code := e.run("run-enclave", "--eif-path", "none.eif", "--cpu-count", "2", "--memory", "128"); code != 3 || !strings.Contains(errOut, "NITROVM_VCPU_CPUS: vCPU CPUs 1023: none of them is among the CPUs this process may run on") {
		t.Errorf("vCPU CPUs out of reach: got status %d, stderr %q, want 3", code, errOut)
	}
	delete(e.vars, "NITROVM_VCPU_CPUS")
}

// expiredSignedEIF builds, in dir, an EIF signed with a certificate that
// expired in 2021, and returns its path.
func expiredSignedEIF(t *testing.T, dir string) string {
	t.Helper()
	keyPath, certPath, _ := writeSignerValid(t, t.TempDir(), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	path := buildTestEIF(t, dir, 1, "expired.eif")
	if code, _, stderr := runEIFCmd(t, nil, "sign-eif", "--eif-path", path, "--signing-certificate", certPath, "--private-key", keyPath); code != 0 {
		t.Fatalf("sign-eif: exit %d: %s", code, stderr)
	}
	return path
}

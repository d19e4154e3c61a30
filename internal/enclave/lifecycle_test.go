package enclave_test

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
	"github.com/nitrovm/nitrovm/internal/enclave"
	"github.com/nitrovm/nitrovm/internal/enclave/enclavetest"
)

func TestMain(m *testing.M) {
	enclavetest.SuperviseIfAsked("supervise")
	os.Exit(m.Run())
}

// newManager returns a Manager on a fresh state directory whose
// supervisors are this test binary (see TestMain) with the fake launcher.
func newManager(t *testing.T) *enclave.Manager {
	t.Helper()
	dir, err := os.MkdirTemp("", "nvm") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	m := &enclave.Manager{
		Store:    enclave.Store{Dir: dir},
		Inspect:  enclave.InspectEIF,
		Spawner:  enclave.ExecSpawner{Executable: os.Args[0], Args: []string{"supervise"}},
		HostArch: "x86_64",
		CPUPool:  []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	}
	t.Cleanup(func() {
		m.TerminateAll(context.Background())
		os.RemoveAll(dir)
	})
	return m
}

func measure(t *testing.T, path string) json.RawMessage {
	t.Helper()
	f, err := eif.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := f.Measure()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	return b
}

func TestTwoEnclavesLifecycle(t *testing.T) {
	m := newManager(t)
	var progress bytes.Buffer
	m.Progress = &progress
	tmp := t.TempDir()
	eifA := enclavetest.WriteEIF(t, tmp, "alpha.eif", "console=ttyS0 fake.console=hello_from_alpha", eif.ArchX86_64, 'a')
	eifB := enclavetest.WriteEIF(t, tmp, "beta.eif", "console=ttyS0", eif.ArchX86_64, 'b')
	ctx := context.Background()

	a, err := m.Run(ctx, enclave.RunOptions{EIFPath: eifA, MemoryMiB: 128, CPUCount: 2, Debug: true})
	if err != nil {
		t.Fatalf("run alpha: %v", err)
	}
	b, err := m.Run(ctx, enclave.RunOptions{EIFPath: eifB, MemoryMiB: 255, CPUIDs: []uint32{5}, CID: 42, Name: "bee", ParentID: "i-0123456789abcdef0"})
	if err != nil {
		t.Fatalf("run beta: %v", err)
	}
	if a.ID != "i-0000000000000000-enc1" || b.ID != "i-0123456789abcdef0-enc2" {
		t.Errorf("IDs: got %s, %s, want i-0000000000000000-enc1, i-0123456789abcdef0-enc2", a.ID, b.ID)
	}
	if a.CID != enclave.FirstAutoCID || b.CID != 42 {
		t.Errorf("CIDs: got %d, %d, want %d, 42", a.CID, b.CID, enclave.FirstAutoCID)
	}
	if a.Name != "alpha" || b.Name != "bee" {
		t.Errorf("names: got %s, %s, want alpha, bee", a.Name, b.Name)
	}
	if fmt.Sprint(a.CPUIDs) != "[1 2]" || fmt.Sprint(b.CPUIDs) != "[5]" {
		t.Errorf("CPUs: got %v, %v, want [1 2], [5]", a.CPUIDs, b.CPUIDs)
	}
	if b.MemoryMiB != 256 {
		t.Errorf("memory: got %d, want 256 (rounded up to 2 MiB)", b.MemoryMiB)
	}
	if a.PID == 0 || a.PID == os.Getpid() {
		t.Errorf("PID: got %d, want the supervisor's", a.PID)
	}
	wantProgress := "Start allocating memory...\nStarted enclave with enclave-cid: 16, memory: 128 MiB, cpu-ids: [1, 2]\nenclave booted in N ms\n" +
		"Start allocating memory...\nStarted enclave with enclave-cid: 42, memory: 256 MiB, cpu-ids: [5]\nenclave booted in N ms\n"
	if got := regexp.MustCompile(`booted in \d+ ms`).ReplaceAllString(progress.String(), "booted in N ms"); got != wantProgress {
		t.Errorf("progress: got %q, want %q", progress.String(), wantProgress)
	}
	// The fake guest's heartbeat comes 20 ms after its launch (fake.boot).
	for _, r := range []*enclave.Record{a, b} {
		if r.BootTimeMs < 20 || !strings.Contains(progress.String(), fmt.Sprintf("booted in %d ms", r.BootTimeMs)) {
			t.Errorf("%s: BootTimeMs %d: want >= 20 and printed", r.Name, r.BootTimeMs)
		}
	}

	list, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("List: got %d records, want alpha and beta", len(list))
	}
	for i, p := range []string{eifA, eifB} {
		var got bytes.Buffer
		json.Compact(&got, list[i].Measurements)
		if want := string(measure(t, p)); got.String() != want {
			t.Errorf("measurements of %s: got %s, want %s", list[i].Name, got.String(), want)
		}
		if list[i].State != enclave.StateRunning {
			t.Errorf("state of %s: got %s, want RUNNING", list[i].Name, list[i].State)
		}
	}
	if list[0].Flags() != "DEBUG_MODE" || list[1].Flags() != "NONE" {
		t.Errorf("flags: got %s, %s, want DEBUG_MODE, NONE", list[0].Flags(), list[1].Flags())
	}

	// Console: attaches to the debug enclave, refused for the other.
	var out bytes.Buffer
	connected := false
	err = m.Console(ctx, a.ID, &out, 300*time.Millisecond, func() { connected = true })
	if err != nil || !connected {
		t.Fatalf("console alpha: got %v (connected %v), want nil", err, connected)
	}
	if !strings.Contains(out.String(), "hello from alpha") {
		t.Errorf("console alpha: got %q, want it to contain %q", out.String(), "hello from alpha")
	}
	err = m.Console(ctx, b.ID, &out, time.Second, nil)
	if enclave.KindOf(err) != enclave.KindConsole {
		t.Errorf("console beta: got %v, want a KindConsole error", err)
	}

	// Terminate by name, then the rest with TerminateAll.
	id, err := m.IDByName("bee")
	if err != nil || id != b.ID {
		t.Fatalf("IDByName: got %v, %v, want %v", id, err, b.ID)
	}
	fin, err := m.Terminate(ctx, id)
	if err != nil || fin.ID != b.ID {
		t.Fatalf("Terminate: got %v, %v, want %s", fin, err, b.ID)
	}
	if _, err := m.Lookup(b.ID); enclave.KindOf(err) != enclave.KindSocket {
		t.Errorf("Lookup after terminate: got %v, want KindSocket", err)
	}
	all, err := m.TerminateAll(ctx)
	if err != nil || len(all) != 1 || all[0].ID != a.ID {
		t.Fatalf("TerminateAll: got %v, %v, want [%s]", all, err, a.ID)
	}
	if list, _ := m.List(); len(list) != 0 {
		t.Errorf("List after terminate: got %d enclaves, want 0", len(list))
	}
	// The CID and name are free again; the slot is not reused.
	c, err := m.Run(ctx, enclave.RunOptions{EIFPath: eifB, MemoryMiB: 128, CPUCount: 1, CID: 42, Name: "bee"})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if c.ID != "i-0000000000000000-enc3" || c.Name != "bee" || c.CID != 42 {
		t.Errorf("rerun: got %s %s %d, want i-0000000000000000-enc3 bee 42", c.ID, c.Name, c.CID)
	}
}

func TestConcurrentRuns(t *testing.T) {
	m := newManager(t)
	p := enclavetest.WriteEIF(t, t.TempDir(), "same.eif", "fake.boot=50ms", eif.ArchX86_64, 'c')
	const n = 8
	recs := make([]*enclave.Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i], errs[i] = m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 2})
		}()
	}
	wg.Wait()
	ids, cids, names, cpus := map[string]bool{}, map[uint64]bool{}, map[string]bool{}, map[uint32]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		r := recs[i]
		if ids[r.ID] || cids[r.CID] || names[r.Name] {
			t.Errorf("run %d: duplicate ID/CID/name %s/%d/%s", i, r.ID, r.CID, r.Name)
		}
		ids[r.ID], cids[r.CID], names[r.Name] = true, true, true
		for _, c := range r.CPUIDs {
			if cpus[c] {
				t.Errorf("run %d: CPU %d given twice", i, c)
			}
			cpus[c] = true
		}
	}
	if !names["same"] || !names["same_7"] {
		t.Errorf("names: got %v, want same, same_1 ... same_7", names)
	}
	// The pool of 16 CPUs is now exhausted.
	_, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1})
	if enclave.KindOf(err) != enclave.KindInsufficientCPUs {
		t.Errorf("run with empty pool: got %v, want KindInsufficientCPUs", err)
	}
	all, err := m.TerminateAll(context.Background())
	if err != nil || len(all) != n {
		t.Errorf("TerminateAll: got %d, %v, want %d, nil", len(all), err, n)
	}
}

func TestRunFailures(t *testing.T) {
	m := newManager(t)
	tmp := t.TempDir()
	good := enclavetest.WriteEIF(t, tmp, "good.eif", "", eif.ArchX86_64, 'g')
	arm := enclavetest.WriteEIF(t, tmp, "arm.eif", "", eif.ArchARM64, 'r')
	panics := enclavetest.WriteEIF(t, tmp, "panic.eif", "fake.panic", eif.ArchX86_64, 'p')
	silent := enclavetest.WriteEIF(t, tmp, "silent.eif", "fake.heartbeat=never", eif.ArchX86_64, 's')
	garbage := filepath.Join(tmp, "garbage.eif")
	os.WriteFile(garbage, []byte("not an eif"), 0o644)
	ctx := context.Background()
	if _, err := m.Run(ctx, enclave.RunOptions{EIFPath: good, MemoryMiB: 64, CPUIDs: []uint32{3}, CID: 99}); err != nil {
		t.Fatalf("run good: %v", err)
	}

	tests := []struct {
		name    string
		opts    enclave.RunOptions
		kind    enclave.Kind
		wantMsg string
	}{
		{"missing eif", enclave.RunOptions{EIFPath: filepath.Join(tmp, "none.eif"), MemoryMiB: 64, CPUCount: 1}, enclave.KindFileOperation, "Failed to open the EIF file"},
		{"not an eif", enclave.RunOptions{EIFPath: garbage, MemoryMiB: 64, CPUCount: 1}, enclave.KindEIF, "EIF file parsing error"},
		{"arch", enclave.RunOptions{EIFPath: arm, MemoryMiB: 64, CPUCount: 1}, enclave.KindEIF, "is built for aarch64, but this host is x86_64"},
		{"cpu not in pool", enclave.RunOptions{EIFPath: good, MemoryMiB: 64, CPUIDs: []uint32{99}}, enclave.KindNoSuchCPU, "contains CPU 99, which is not available in the pool"},
		{"cpu in use", enclave.RunOptions{EIFPath: good, MemoryMiB: 64, CPUIDs: []uint32{3}}, enclave.KindNoSuchCPU, "which is used by enclave"},
		{"too many cpus", enclave.RunOptions{EIFPath: good, MemoryMiB: 64, CPUCount: 17}, enclave.KindInsufficientCPUs, "`cpu-count` is 17, which is more than the configured CPU pool size"},
		{"cid in use", enclave.RunOptions{EIFPath: good, MemoryMiB: 64, CPUCount: 1, CID: 99}, enclave.KindInvalidArgument, "CID 99 is already used"},
		{"bad parent id", enclave.RunOptions{EIFPath: good, MemoryMiB: 64, CPUCount: 1, ParentID: "../x"}, enclave.KindInvalidArgument, "parent-id"},
		{"kernel panic", enclave.RunOptions{EIFPath: panics, MemoryMiB: 64, CPUCount: 1}, enclave.KindBoot, "Kernel panic - not syncing: fake"},
		{"no heartbeat", enclave.RunOptions{EIFPath: silent, MemoryMiB: 64, CPUCount: 1, HeartbeatTimeout: 300 * time.Millisecond}, enclave.KindBoot, "no heartbeat within 300ms"},
	}
	for _, tt := range tests {
		_, err := m.Run(ctx, tt.opts)
		if enclave.KindOf(err) != tt.kind || err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: got %v (kind %v), want kind %v containing %q", tt.name, err, enclave.KindOf(err), tt.kind, tt.wantMsg)
		}
	}
	recs, err := m.Store.Scan()
	if err != nil || len(recs) != 1 {
		t.Errorf("after failures: got %d live entries (%v), want 1", len(recs), err)
	}

	m.Inspect = func(string) (enclave.Image, error) { return enclave.Image{Arch: "x86_64", Size: 100 << 20}, nil }
	_, err = m.Run(ctx, enclave.RunOptions{EIFPath: good, MemoryMiB: 256, CPUCount: 1})
	if want := "Insufficient memory requested. User provided `memory` is 256 MB, but based on the EIF file size, the minimum memory should be 400 MB"; err == nil || err.Error() != want {
		t.Errorf("memory vs EIF size: got %v, want %q", err, want)
	}
	m.MemAvailableMiB = func() (uint64, error) { return 1000, nil }
	_, err = m.Run(ctx, enclave.RunOptions{EIFPath: good, MemoryMiB: 2048, CPUCount: 1})
	if enclave.KindOf(err) != enclave.KindInsufficientMemoryAvailable {
		t.Errorf("memory vs host: got %v, want KindInsufficientMemoryAvailable", err)
	}
}

func TestEnclaveExitFreesResources(t *testing.T) {
	m := newManager(t)
	p := enclavetest.WriteEIF(t, t.TempDir(), "short.eif", "fake.exit=200ms", eif.ArchX86_64, 'e')
	r, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1, CID: 77})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := m.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enclave %s still listed after it exited", r.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	events, err := os.ReadFile(filepath.Join(m.Store.Dir, "events.log"))
	if err != nil || !strings.Contains(string(events), `"Event":"exited"`) || !strings.Contains(string(events), "guest powered off") {
		t.Errorf("events.log: got %q, %v, want an exited event with its detail", events, err)
	}
	if _, err := m.Run(context.Background(), enclave.RunOptions{EIFPath: p, MemoryMiB: 64, CPUCount: 1, CID: 77}); err != nil {
		t.Errorf("reuse CID 77 after exit: got %v, want nil", err)
	}
}

func TestNamingErrors(t *testing.T) {
	m := newManager(t)
	if _, err := m.IDByName("nobody"); enclave.KindOf(err) != enclave.KindNaming {
		t.Errorf("IDByName(nobody): got %v, want KindNaming", err)
	}
	if _, err := m.Terminate(context.Background(), "i-0000000000000000-enc99"); enclave.KindOf(err) != enclave.KindSocket {
		t.Errorf("Terminate(unknown): got %v, want KindSocket", err)
	}
	if err := m.Console(context.Background(), "i-0000000000000000-enc99", &bytes.Buffer{}, 0, nil); enclave.KindOf(err) != enclave.KindSocket {
		t.Errorf("Console(unknown): got %v, want KindSocket", err)
	}
	all, err := m.TerminateAll(context.Background())
	if err != nil || len(all) != 0 {
		t.Errorf("TerminateAll(none): got %v, %v, want none", all, err)
	}
}

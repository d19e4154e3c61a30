package enclave

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		kind Kind
	}{
		{"512", 512, 0},
		{"512M", 512, 0},
		{"512m", 512, 0},
		{"2G", 2048, 0},
		{"1g", 1024, 0},
		{"1T", 1 << 20, 0},
		{"", 0, KindInvalidArgument},
		{"M", 0, KindInvalidArgument},
		{"12K", 0, KindInvalidArgument},
		{"-5", 0, KindInvalidArgument},
		{"1.5G", 0, KindInvalidArgument},
		{"99999999999999999999T", 0, KindInvalidArgument},
		{"18446744073709551615T", 0, KindInvalidArgument},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if KindOf(err) != tt.kind || (tt.kind != 0) != (err != nil) {
			t.Errorf("ParseMemory(%q) error = %v, want kind %v", tt.in, err, tt.kind)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseMemory(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseCPUPool(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint32
		wantErr bool
	}{
		{"1-3,6", []uint32{1, 2, 3, 6}, false},
		{"3,1,1", []uint32{1, 3}, false},
		{" 2 ", []uint32{2}, false},
		{"", nil, true},
		{"a", nil, true},
		{"3-1", nil, true},
		{"1-x", nil, true},
		{"0-99999", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseCPUPool(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseCPUPool(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if formatCPUIDs(got) != formatCPUIDs(tt.want) {
			t.Errorf("ParseCPUPool(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestVCPUCPUs(t *testing.T) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	first := -1
	for c := 0; c < 1024 && first < 0; c++ {
		if allowed.IsSet(c) {
			first = c
		}
	}
	if allowed.IsSet(1023) {
		t.Skip("this process may run on CPU 1023")
	}
	one := strconv.Itoa(first)
	tests := []struct {
		val     string
		want    []int
		wantErr string
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{one, []int{first}, ""},
		{one + ",1023", []int{first, 1023}, ""},
		{"1,x", nil, "NITROVM_VCPU_CPUS: invalid CPU list entry \"x\""},
		{"2-1", nil, "NITROVM_VCPU_CPUS: invalid CPU list interval"},
		{"1023", nil, "NITROVM_VCPU_CPUS: vCPU CPUs 1023: none of them is among the CPUs this process may run on"},
		{"1000-1024", nil, "NITROVM_VCPU_CPUS: vCPU CPU 1024 out of range 0..1023"},
	}
	for _, tt := range tests {
		got, err := VCPUCPUs(func(k string) string {
			if k == VCPUCPUsEnv {
				return tt.val
			}
			return ""
		})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("VCPUCPUs(%q) error = %v, want %q", tt.val, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("VCPUCPUs(%q) = %v, %v, want %v", tt.val, got, err, tt.want)
		}
	}
}

func TestCheckOptions(t *testing.T) {
	ok := RunOptions{EIFPath: "a.eif", MemoryMiB: 512, CPUCount: 2}
	tests := []struct {
		name string
		mod  func(*RunOptions)
		kind Kind
	}{
		{"valid", func(*RunOptions) {}, KindUnspecified},
		{"valid cpu ids", func(o *RunOptions) { o.CPUCount, o.CPUIDs = 0, []uint32{1, 3} }, KindUnspecified},
		{"no eif", func(o *RunOptions) { o.EIFPath = "" }, KindMissingArgument},
		{"no cpus", func(o *RunOptions) { o.CPUCount = 0 }, KindMissingArgument},
		{"both cpu forms", func(o *RunOptions) { o.CPUIDs = []uint32{1} }, KindConflictingArgument},
		{"negative count", func(o *RunOptions) { o.CPUCount = -1 }, KindInvalidArgument},
		{"duplicate cpu ids", func(o *RunOptions) { o.CPUCount, o.CPUIDs = 0, []uint32{1, 1} }, KindInvalidCPUConfig},
		{"zero memory", func(o *RunOptions) { o.MemoryMiB = 0 }, KindInsufficientMemory},
		{"small memory", func(o *RunOptions) { o.MemoryMiB = 63 }, KindInsufficientMemory},
		{"cid 1", func(o *RunOptions) { o.CID = 1 }, KindInvalidArgument},
		{"cid 2", func(o *RunOptions) { o.CID = 2 }, KindInvalidArgument},
		{"cid 3", func(o *RunOptions) { o.CID = 3 }, KindInvalidArgument},
		{"cid u32 max", func(o *RunOptions) { o.CID = math.MaxUint32 }, KindInvalidArgument},
		{"cid too big", func(o *RunOptions) { o.CID = math.MaxUint32 + 1 }, KindInvalidArgument},
		{"cid 4", func(o *RunOptions) { o.CID = 4 }, KindUnspecified},
		{"negative timeout", func(o *RunOptions) { o.HeartbeatTimeout = -time.Second }, KindInvalidArgument},
		{"name with slash", func(o *RunOptions) { o.Name = "a/b" }, KindNaming},
		{"name dotdot", func(o *RunOptions) { o.Name = ".." }, KindNaming},
	}
	for _, tt := range tests {
		o := ok
		tt.mod(&o)
		err := checkOptions(&o)
		if got := KindOf(err); got != tt.kind || (tt.kind == KindUnspecified) != (err == nil) {
			t.Errorf("%s: got %v (kind %v), want kind %v", tt.name, err, got, tt.kind)
		}
	}
}

func TestCheckMemory(t *testing.T) {
	tests := []struct {
		mib     uint64
		size    int64
		want    uint64
		wantErr string
	}{
		{512, 100 << 20, 512, ""},
		{400, 100 << 20, 400, ""},
		{399, 100 << 20, 0, "Insufficient memory requested. User provided `memory` is 399 MB, but based on the EIF file size, the minimum memory should be 400 MB"},
		{65, 1 << 20, 66, ""},
		{64, (16 << 20) + 1, 0, "Insufficient memory requested. User provided `memory` is 64 MB, but based on the EIF file size, the minimum memory should be 68 MB"},
	}
	for _, tt := range tests {
		got, err := checkMemory(tt.mib, tt.size)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || KindOf(err) != KindInsufficientMemory {
				t.Errorf("checkMemory(%d, %d) error = %v, want %q", tt.mib, tt.size, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("checkMemory(%d, %d) = %v, %v, want %v", tt.mib, tt.size, got, err, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	if got, want := defaultName("/x/y/hello.eif"), "hello"; got != want {
		t.Errorf("defaultName: got %v, want %v", got, want)
	}
	if got, want := defaultName("hello"), "hello"; got != want {
		t.Errorf("defaultName: got %v, want %v", got, want)
	}
	taken := map[string]bool{"a": true, "a_1": true}
	if got, want := uniqueName("a", taken), "a_2"; got != want {
		t.Errorf("uniqueName: got %v, want %v", got, want)
	}
	if got, want := uniqueName("b", taken), "b"; got != want {
		t.Errorf("uniqueName: got %v, want %v", got, want)
	}
	if got, want := formatCPUIDs([]uint32{1, 3}), "[1, 3]"; got != want {
		t.Errorf("formatCPUIDs: got %v, want %v", got, want)
	}
}

func TestDefaultStateDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		env  map[string]string
		uid  int
		want string
	}{
		{map[string]string{StateDirEnv: "/s", "XDG_RUNTIME_DIR": "/x"}, 1000, "/s"},
		{map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/nitrovm"},
		{nil, 0, "/run/nitrovm"},
		{nil, 1000, "/tmp/nitrovm-1000"},
	}
	for _, tt := range tests {
		if got := DefaultStateDir(env(tt.env), tt.uid); got != tt.want {
			t.Errorf("DefaultStateDir(%v, %d) = %v, want %v", tt.env, tt.uid, got, tt.want)
		}
	}
	if got, want := DefaultStateDir(nil, 5), "/tmp/nitrovm-5"; got != want {
		t.Errorf("DefaultStateDir(nil) = %v, want %v", got, want)
	}
}

func TestProcessAlive(t *testing.T) {
	pid, start := selfStart()
	if start == 0 {
		t.Fatalf("selfStart: got start 0, want non-zero")
	}
	if !processAlive(pid, start) {
		t.Errorf("processAlive(self): got false, want true")
	}
	if processAlive(pid, start+1) {
		t.Errorf("processAlive(self, wrong start): got true, want false")
	}
	if processAlive(0, 0) || processAlive(1<<30, 0) {
		t.Errorf("processAlive(nonexistent): got true, want false")
	}
}

func TestStaleEntriesRemoved(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	live := &Record{ID: "i-0-enc1", Slot: 1, State: StateRunning}
	live.PID, live.PIDStart = selfStart()
	dead := &Record{ID: "i-0-enc2", Slot: 2, State: StateRunning, PID: 1 << 30}
	for _, r := range []*Record{live, dead} {
		if err := os.Mkdir(s.enclaveDir(r.ID), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := writeRecord(s.enclaveDir(r.ID), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(s.enclaveDir("i-0-enc3"), 0o700); err != nil { // no record
		t.Fatal(err)
	}
	if err := os.Mkdir(s.enclaveDir("logs"), 0o700); err != nil { // not an enclave
		t.Fatal(err)
	}
	got, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != live.ID {
		t.Fatalf("Scan: got %v, want only %s", got, live.ID)
	}
	for _, id := range []string{"i-0-enc2", "i-0-enc3"} {
		if _, err := os.Stat(s.enclaveDir(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s: got %v, want it removed", id, err)
		}
	}
	if _, err := os.Stat(s.enclaveDir("logs")); err != nil {
		t.Errorf("logs directory: got %v, want it kept", err)
	}
}

func TestErrorFormatting(t *testing.T) {
	e := wrapErr(KindBoot, errors.New("x"), "boot %d", 1)
	if got, want := e.Error(), "boot 1: x"; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if KindOf(errors.New("plain")) != KindUnspecified {
		t.Errorf("KindOf(plain): got %v, want KindUnspecified", KindOf(errors.New("plain")))
	}
}

func TestParseMemAvailable(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"MemTotal: 4000000 kB\nMemAvailable:    2097152 kB\n", 2048, false},
		{"MemTotal: 4000000 kB\n", 0, true},
		{"MemAvailable: x kB\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseMemAvailable([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseMemAvailable(%q) = %v, %v, want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := HostMemAvailableMiB(); err != nil {
		t.Errorf("HostMemAvailableMiB: got %v, want nil", err)
	}
}

func TestSupervisorEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=disablethp=1"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=disablethp=1"}},
		{"other settings kept", []string{"GODEBUG=gctrace=1", "B=2"}, []string{"GODEBUG=gctrace=1,disablethp=1", "B=2"}},
		{"user's choice wins", []string{"GODEBUG=disablethp=0"}, []string{"GODEBUG=disablethp=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := supervisorEnv(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("supervisorEnv(%q): got %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestValidParentID(t *testing.T) {
	for id, want := range map[string]bool{
		"i-0000000000000000":    true,
		"a":                     true,
		"A.b_c-9":               true,
		strings.Repeat("x", 64): true,
		strings.Repeat("x", 65): false,
		"":                      false,
		"-abc":                  false,
		".hidden":               false,
		"a/b":                   false,
		"a b":                   false,
		"é":                     false,
	} {
		if got := validParentID(id); got != want {
			t.Errorf("validParentID(%q): got %v, wanted %v", id, got, want)
		}
	}
}

// TestTerminateEndedByItself: a supervisor that no longer answers because
// its enclave ended by itself (it exited, or exits within the grace) is
// terminated already, not a connection failure (E39); one that stays
// alive without answering is.
func TestTerminateEndedByItself(t *testing.T) {
	m := &Manager{Store: Store{Dir: t.TempDir()}}
	start := func(args ...string) (*Record, *exec.Cmd) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		if err := cmd.Start(); err != nil {
			t.Skipf("%s: %v", args[0], err)
		}
		st, err := processStart(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		return &Record{ID: "i-0000000000000000-enc1", PID: cmd.Process.Pid, PIDStart: st}, cmd
	}
	ctx := context.Background()

	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("true: %v", err)
	}
	gone := &Record{ID: "i-0000000000000000-enc1", PID: cmd.Process.Pid, PIDStart: 1}
	if r, err := m.terminate(ctx, gone); err != nil || r != gone {
		t.Errorf("exited supervisor: got %v, %v; want its record, nil", r, err)
	}

	exiting, cmd := start("sleep", "0.3")
	go cmd.Wait() // reaped as its parent would be
	t0 := time.Now()
	if r, err := m.terminate(ctx, exiting); err != nil || r != exiting {
		t.Errorf("exiting supervisor: got %v, %v; want its record, nil", r, err)
	}
	if d := time.Since(t0); d > exitGrace {
		t.Errorf("exiting supervisor: took %s, more than the grace", d)
	}

	stuck, cmd := start("sleep", "30")
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if waitExit(ctx, stuck, 100*time.Millisecond) {
		t.Errorf("waitExit: a live process reported gone")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.terminate(cctx, stuck); KindOf(err) != KindConnection {
		t.Errorf("live supervisor not answering: got %v, want a connection error", err)
	}
}

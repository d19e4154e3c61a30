package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestFisherGreater(t *testing.T) {
	tests := []struct {
		name                   string
		aFail, aOK, bFail, bOK int
		want                   float64
	}{
		// The first count: 3 of 42 against 0 of 42, C(42,3)/C(84,3).
		{"issue 3/42 vs 0/42", 3, 39, 0, 42, 11480.0 / 95284.0},
		// Fisher's lady tasting tea, one-sided: 17/70.
		{"tea 3,1 vs 1,3", 3, 1, 1, 3, 17.0 / 70.0},
		{"no failures", 0, 60, 0, 60, 1},
		{"fewer failures than b", 0, 10, 5, 5, 1},
		// All 5 failures in row a of 5+5: C(5,5)C(5,0)/C(10,5) = 1/252.
		{"all in a", 5, 0, 0, 5, 1.0 / 252.0},
		// R: fisher.test(matrix(c(2,58,1,59),2), alternative="greater") = 0.5.
		{"2/60 vs 1/60", 2, 58, 1, 59, 0.5},
		{"empty", 0, 0, 0, 0, 1},
	}
	for _, tt := range tests {
		got := fisherGreater(tt.aFail, tt.aOK, tt.bFail, tt.bOK)
		if math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: got %.12f, want %.12f", tt.name, got, tt.want)
		}
	}
	if p := fisherGreater(-1, 1, 1, 1); !math.IsNaN(p) {
		t.Errorf("negative count: got %v, want NaN", p)
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		want run
		ok   bool
	}{
		{"AB workload=boot vmm=nitrovm round=3 class=ok secs=5.1", run{"boot", "nitrovm", "ok"}, true},
		{"[  12.3] AB workload=vsock vmm=qemu class=hang", run{"vsock", "qemu", "hang"}, true},
		{"AB workload=boot vmm=qemu", run{"boot", "qemu", ""}, false},
		{"LAB workload=boot vmm=qemu class=ok", run{}, false},
		{"nothing here", run{}, false},
	}
	for _, tt := range tests {
		got, ok := parseLine(tt.line)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseLine(%q): got %+v %v, want %+v %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSummarise(t *testing.T) {
	var runs []run
	for i := range 42 {
		c := "ok"
		if i < 3 {
			c = "hang"
		}
		runs = append(runs, run{"boot", "nitrovm", c}, run{"boot", "qemu", "ok"})
	}
	runs = append(runs, run{"vsock", "nitrovm", "ok"})
	s := summarise(runs, nil)
	if len(s) != 2 || s[0].Workload != "boot" || s[1].Workload != "vsock" {
		t.Fatalf("got %+v, want boot and vsock", s)
	}
	if s[0].Counts["nitrovm"]["hang"] != 3 || s[0].Counts["nitrovm"]["ok"] != 39 || s[0].Counts["qemu"]["ok"] != 42 {
		t.Errorf("boot counts: got %v", s[0].Counts)
	}
	if s[0].P == nil || math.Abs(*s[0].P-11480.0/95284.0) > 1e-9 {
		t.Errorf("boot p: got %v, want %v", s[0].P, 11480.0/95284.0)
	}
	if s[1].P != nil {
		t.Errorf("vsock p without qemu runs: got %v, want none", *s[1].P)
	}
}

// TestParseTripleFaults: a triple fault's log block is judged by L1's
// record in it; other blocks, and result lines inside blocks, are not
// runs of their own.
func TestParseTripleFaults(t *testing.T) {
	const (
		shutdown = "NITROVM-L1-SHUTDOWN nitrovm-212 [000] d..1. 7.7: kvm_exit: vcpu 0 reason shutdown rip 0xffffffff811d5600 info1 0x0 info2 0x0 intr_info 0x80000b0e error_code 0x00000010"
		cr3      = "NITROVM-L1-SHUTDOWN nitrovm-212 [000] ..... 7.7: shutdown_cr3: (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x1829000 pages=65536 id=0 cr2=0xfffffe0000000080"
		kmap     = `time=T level=WARN msg="vm state" text="kernel map cr3=0x1829000 va=0xfffffe0000000000-0xfffffe0000001000 pa=0x199c000 prot=r-- page=4K"`
		inModule = "NITROVM-L1-SHUTDOWN qemu-1 [001] d..1. 9.1: kvm_exit: vcpu 1 reason shutdown rip 0xffffffffc0446000 info1 0x0 info2 0x0 intr_info 0x0 error_code 0x0"
		module   = "NITROVM-L1-MODULE kvm_amd 147456 7 - Live 0xffffffffc0437000"
	)
	in := strings.Join([]string{
		"AB workload=vsock vmm=nitrovm round=1 class=triplefault secs=21.6",
		"ABLOG begin vsock nitrovm 1 triplefault",
		"guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU 0", kmap, shutdown, cr3,
		"ABLOG end",
		"AB workload=vsock vmm=qemu round=1 class=triplefault secs=9.0",
		"ABLOG begin vsock qemu 1 triplefault", inModule, module, "ABLOG end",
		"AB workload=vsock vmm=nitrovm round=2 class=triplefault secs=3.0",
		"ABLOG begin vsock nitrovm 2 triplefault", "no record", "ABLOG end",
		"AB workload=vsock vmm=nitrovm round=3 class=hang secs=300",
		"ABLOG begin vsock nitrovm 3 hang", shutdown, "AB workload=x vmm=y round=1 class=ok", "ABLOG end",
	}, "\n")
	runs, triples, err := parse(strings.NewReader(in))
	if err != nil || len(runs) != 4 {
		t.Fatalf("parse: %d runs, %v; want 4", len(runs), err)
	}
	s := summarise(runs, triples)
	want := map[string]map[string]int{
		"nitrovm": {"l1-false-page-fault": 1, "unproven": 1},
		"qemu":    {"l1-state-in-guest": 1},
	}
	if len(s) != 1 || fmt.Sprint(s[0].TripleFaults) != fmt.Sprint(want) {
		t.Errorf("triple faults: got %+v, want %v", s, want)
	}
	var b strings.Builder
	format(&b, s[0])
	if !strings.Contains(b.String(), "vsock    nitrovm  triple faults by L1's record: l1-false-page-fault=1 unproven=1") {
		t.Errorf("format:\n%s", b.String())
	}
}

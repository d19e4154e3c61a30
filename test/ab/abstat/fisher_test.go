package main

import (
	"math"
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
	s := summarise(runs)
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

package e2elog

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAppendReadReruns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e2e.jsonl")
	if recs, err := ReadFile(p); err != nil || len(recs) != 0 {
		t.Fatalf("missing log: got %v, %v; want empty, nil", recs, err)
	}
	in := []Record{
		{Test: "TestA", Attempt: 1, Result: Rerun, Class: "l1-panic", Evidence: "Oops: int3", Seconds: 40},
		{Test: "TestA", Attempt: 2, Result: Pass, Seconds: 90},
		{Test: "TestB", Attempt: 1, Result: Fail, Seconds: 30},
	}
	for _, r := range in {
		if err := Append(p, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) || got[0] != in[0] || got[2] != in[2] {
		t.Errorf("read back %v, want %v", got, in)
	}
	if n := Reruns(got); n != 1 {
		t.Errorf("Reruns: got %d, want 1", n)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not json", "{\"test\":\"TestA\",\"result\":\"pass\"}\nnope\n", "line 2"},
		{"no test", `{"result":"pass"}`, "line 1: test and result are required"},
		{"no result", `{"test":"TestA"}`, "line 1: test and result are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	tests := []struct {
		name   string
		recs   []Record
		expect []string
		max    int
		ok     bool
		want   []string
	}{
		{
			name: "all pass, one rerun",
			recs: []Record{
				{Test: "TestBoot", Attempt: 1, Result: Rerun, Class: "l1-freeze", Seconds: 100},
				{Test: "TestBoot", Attempt: 2, Result: Pass, Seconds: 150},
				{Test: "TestNSM", Attempt: 1, Result: Pass, Seconds: 60},
			},
			expect: []string{"TestBoot", "TestNSM"}, max: 2, ok: true,
			want: []string{"TestBoot  2         pass    150      l1-freeze 1", "TestNSM   1         pass    60       none", "reruns: 1 of at most 2 (l1-freeze 1): ok"},
		},
		{
			name: "too many reruns",
			recs: []Record{
				{Test: "TestA", Attempt: 1, Result: Rerun, Class: "l1-panic"},
				{Test: "TestA", Attempt: 2, Result: Rerun, Class: "l1-panic"},
				{Test: "TestB", Attempt: 1, Result: Rerun, Class: "l1-freeze"},
				{Test: "TestA", Attempt: 3, Result: Pass},
				{Test: "TestB", Attempt: 2, Result: Pass},
			},
			max: 2, ok: false,
			want: []string{"reruns: 3 of at most 2 (l1-freeze 1, l1-panic 2): too many: the run fails"},
		},
		{
			name: "state in guest is counted and shown with the others",
			recs: []Record{
				{Test: "TestEnclaveCLI", Attempt: 1, Result: Rerun, Class: "l1-state-in-guest", Evidence: "concurrent: vcpu 0 WARNING cr3=0x101e64000 ...", Seconds: 300},
				{Test: "TestEnclaveCLI", Attempt: 2, Result: Pass, Seconds: 280},
				{Test: "TestBoot", Attempt: 1, Result: Rerun, Class: "l1-panic"},
				{Test: "TestBoot", Attempt: 2, Result: Pass},
			},
			max: 2, ok: true,
			want: []string{"TestEnclaveCLI  2         pass    280      l1-state-in-guest 1", "reruns: 2 of at most 2 (l1-panic 1, l1-state-in-guest 1): ok"},
		},
		{
			name: "state in guest shares the cap",
			recs: []Record{
				{Test: "TestA", Attempt: 1, Result: Rerun, Class: "l1-state-in-guest"},
				{Test: "TestA", Attempt: 2, Result: Rerun, Class: "l1-freeze"},
				{Test: "TestA", Attempt: 3, Result: Rerun, Class: "l1-state-in-guest"},
				{Test: "TestA", Attempt: 4, Result: Pass},
			},
			max: 2, ok: false,
			want: []string{"reruns: 3 of at most 2 (l1-freeze 1, l1-state-in-guest 2): too many: the run fails"},
		},
		{
			name:   "a failure and a missing test",
			recs:   []Record{{Test: "TestA", Attempt: 1, Result: Fail}},
			expect: []string{"TestA", "TestGone"}, max: 2, ok: false,
			want: []string{"TestA     1         fail", "TestGone  0         missing"},
		},
		{
			name: "skip is not a failure",
			recs: []Record{{Test: "TestA", Attempt: 1, Result: Skip}},
			max:  0, ok: true,
			want: []string{"reruns: 0 of at most 0 (none): ok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			ok, err := WriteTable(&b, Summarize(tt.recs, tt.expect), tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok {
				t.Errorf("ok: got %v, want %v\n%s", ok, tt.ok, b.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

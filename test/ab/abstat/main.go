// Command abstat summarises the A/B runs of scripts/ab.sh: it reads result
// lines
//
//	AB workload=W vmm=V round=N class=C secs=S
//
// (other lines are ignored) from the files named on the command line, or
// stdin, and prints per workload the count of each class (ok, triplefault,
// hang, panic, reset, other) per VMM and the one-sided Fisher exact p-value
// for "nitrovm fails more often than qemu", where every class but ok is a
// failure. A triple fault's log block ("ABLOG begin W V N triplefault" to
// "ABLOG end") that holds L1's record of it is judged by
// nested.RecordedTripleFault: the triple faults are also counted by the
// L1 fault class that record proves, or as unproven. With --json it
// prints one JSON object per workload instead.
//
// Usage: abstat [--json] [FILE...]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/nitrovm/nitrovm/internal/nested"
)

// run is one classified run.
type run struct {
	workload, vmm, class string
}

// parseLine returns the run on an "AB ..." line; ok is false for any other
// line or one missing workload, vmm or class.
func parseLine(line string) (r run, ok bool) {
	i := strings.Index(line, "AB ")
	if i < 0 || (i > 0 && line[i-1] != ' ') {
		return run{}, false
	}
	for _, f := range strings.Fields(line[i+3:]) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "workload":
			r.workload = v
		case "vmm":
			r.vmm = v
		case "class":
			r.class = v
		}
	}
	return r, r.workload != "" && r.vmm != "" && r.class != ""
}

// summary is one workload's counts.
type summary struct {
	Workload string                    `json:"workload"`
	Counts   map[string]map[string]int `json:"counts"` // vmm -> class -> runs
	// P is the one-sided Fisher exact p-value for "nitrovm fails more
	// often than qemu"; omitted unless both VMMs ran.
	P *float64 `json:"p_nitrovm_worse,omitempty"`
	// TripleFaults counts each VMM's triple faults by the L1 fault class
	// their log proves (nested.RecordedTripleFault), or "unproven".
	TripleFaults map[string]map[string]int `json:"triple_faults,omitempty"`
}

// tripleFault is the judgement of one triple fault's log block.
type tripleFault struct {
	workload, vmm, class string
}

// judge returns the judgement of a log block whose header is
// "ABLOG begin W V N triplefault"; ok is false for any other block.
func judge(header string, body []string) (tripleFault, bool) {
	f := strings.Fields(strings.TrimPrefix(header, "ABLOG begin "))
	if len(f) < 4 || f[3] != "triplefault" {
		return tripleFault{}, false
	}
	t := tripleFault{workload: f[0], vmm: f[1], class: "unproven"}
	if fault := nested.RecordedTripleFault(strings.Join(body, "\n")); fault != nil {
		t.class = fault.Class
	}
	return t, true
}

// summarise tallies runs and judged triple faults per workload, in
// workload name order.
func summarise(runs []run, triples []tripleFault) []summary {
	by := map[string]*summary{}
	get := func(workload string) *summary {
		s := by[workload]
		if s == nil {
			s = &summary{Workload: workload, Counts: map[string]map[string]int{}}
			by[workload] = s
		}
		return s
	}
	for _, r := range runs {
		s := get(r.workload)
		if s.Counts[r.vmm] == nil {
			s.Counts[r.vmm] = map[string]int{}
		}
		s.Counts[r.vmm][r.class]++
	}
	for _, t := range triples {
		s := get(t.workload)
		if s.TripleFaults == nil {
			s.TripleFaults = map[string]map[string]int{}
		}
		if s.TripleFaults[t.vmm] == nil {
			s.TripleFaults[t.vmm] = map[string]int{}
		}
		s.TripleFaults[t.vmm][t.class]++
	}
	var out []summary
	for _, s := range by {
		n, q := s.Counts["nitrovm"], s.Counts["qemu"]
		if n != nil && q != nil {
			nf, nok := failures(n)
			qf, qok := failures(q)
			p := fisherGreater(nf, nok, qf, qok)
			s.P = &p
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out
}

// failures returns the failed and ok run counts of one VMM.
func failures(c map[string]int) (fail, ok int) {
	for class, n := range c {
		if class == "ok" {
			ok += n
		} else {
			fail += n
		}
	}
	return fail, ok
}

// format writes s as text.
func format(w io.Writer, s summary) {
	var vmms []string
	for v := range s.Counts {
		vmms = append(vmms, v)
	}
	sort.Strings(vmms)
	for _, v := range vmms {
		c := s.Counts[v]
		var classes []string
		for k := range c {
			classes = append(classes, k)
		}
		sort.Strings(classes)
		fail, ok := failures(c)
		parts := make([]string, 0, len(classes))
		for _, k := range classes {
			parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
		}
		fmt.Fprintf(w, "%-8s %-8s runs=%d failed=%d (%s)\n", s.Workload, v, fail+ok, fail, strings.Join(parts, " "))
	}
	if s.P != nil {
		fmt.Fprintf(w, "%-8s one-sided Fisher exact p (nitrovm fails more often than qemu) = %.4f\n", s.Workload, *s.P)
	}
	vmms = vmms[:0]
	for v := range s.TripleFaults {
		vmms = append(vmms, v)
	}
	sort.Strings(vmms)
	for _, v := range vmms {
		var parts []string
		for k, n := range s.TripleFaults[v] {
			parts = append(parts, fmt.Sprintf("%s=%d", k, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "%-8s %-8s triple faults by L1's record: %s\n", s.Workload, v, strings.Join(parts, " "))
	}
}

// parse reads result lines and judges triple-fault log blocks from r.
func parse(r io.Reader) (runs []run, triples []tripleFault, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var header string // of the log block being read, "" outside one
	var body []string
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "ABLOG begin "):
			header, body = line, nil
			continue
		case line == "ABLOG end":
			if t, ok := judge(header, body); ok {
				triples = append(triples, t)
			}
			header, body = "", nil
			continue
		case header != "":
			body = append(body, line)
			continue
		}
		if x, ok := parseLine(line); ok {
			runs = append(runs, x)
		}
	}
	return runs, triples, sc.Err()
}

func main() {
	asJSON := flag.Bool("json", false, "one JSON object per workload")
	flag.Parse()
	var (
		runs    []run
		triples []tripleFault
	)
	read := func(r io.Reader) error {
		rs, ts, err := parse(r)
		runs, triples = append(runs, rs...), append(triples, ts...)
		return err
	}
	if flag.NArg() == 0 {
		if err := read(os.Stdin); err != nil {
			fmt.Fprintf(os.Stderr, "abstat: stdin: %v\n", err)
			os.Exit(1)
		}
	}
	for _, p := range flag.Args() {
		f, err := os.Open(p)
		if err == nil {
			err = read(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "abstat: %v\n", err)
			os.Exit(1)
		}
	}
	if len(runs) == 0 {
		fmt.Fprintln(os.Stderr, "abstat: no AB result lines")
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, s := range summarise(runs, triples) {
		if *asJSON {
			enc.Encode(s)
			continue
		}
		format(os.Stdout, s)
	}
}

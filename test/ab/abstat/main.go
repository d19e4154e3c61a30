// Command abstat summarises the A/B runs of scripts/ab.sh: it reads result
// lines
//
//	AB workload=W vmm=V round=N class=C secs=S
//
// (other lines are ignored) from the files named on the command line, or
// stdin, and prints per workload the count of each class (ok, triplefault,
// hang, panic, reset, other) per VMM and the one-sided Fisher exact p-value
// for "nitrovm fails more often than qemu", where every class but ok is a
// failure. With --json it prints one JSON object per workload instead.
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
}

// summarise tallies runs per workload, in workload name order.
func summarise(runs []run) []summary {
	by := map[string]*summary{}
	for _, r := range runs {
		s := by[r.workload]
		if s == nil {
			s = &summary{Workload: r.workload, Counts: map[string]map[string]int{}}
			by[r.workload] = s
		}
		if s.Counts[r.vmm] == nil {
			s.Counts[r.vmm] = map[string]int{}
		}
		s.Counts[r.vmm][r.class]++
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
}

func main() {
	asJSON := flag.Bool("json", false, "one JSON object per workload")
	flag.Parse()
	var runs []run
	read := func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if x, ok := parseLine(strings.TrimRight(sc.Text(), "\r")); ok {
				runs = append(runs, x)
			}
		}
		return sc.Err()
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
	for _, s := range summarise(runs) {
		if *asJSON {
			enc.Encode(s)
			continue
		}
		format(os.Stdout, s)
	}
}

// Command e2ereport prints the end-to-end tests' table from their log (see
// package e2elog): per test its attempts, result, time and reruns by
// class, then the run's reruns against the cap. It exits 1 when a test
// failed or has no result, or when the run used more reruns than allowed.
//
//	go run ./internal/tools/e2ereport [-max-reruns 2] [-expect TestA,TestB] LOG
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nitrovm/nitrovm/internal/e2elog"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("e2ereport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxReruns := fs.Int("max-reruns", e2elog.DefaultMaxReruns, "reruns allowed in the whole run")
	expect := fs.String("expect", "", "comma-separated tests that must have a result")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "e2ereport: want exactly one argument, the log file")
		return 2
	}
	recs, err := e2elog.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "e2ereport: %v\n", err)
		return 1
	}
	var want []string
	for _, t := range strings.Split(*expect, ",") {
		if t = strings.TrimSpace(t); t != "" {
			want = append(want, t)
		}
	}
	ok, err := e2elog.WriteTable(stdout, e2elog.Summarize(recs, want), *maxReruns)
	if err != nil {
		fmt.Fprintf(stderr, "e2ereport: %v\n", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// Package jailtest installs the supervisor's seccomp filter in fuzzing
// workers, so that fuzzers of guest-facing code run under the same
// allowlist as the VMM (a fuzz input that makes the code under test call a
// syscall outside it kills the worker, which Go reports as a crash).
package jailtest

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/nitrovm/nitrovm/internal/jail"
)

// Env names the environment variable that turns the filter off in fuzzing
// workers ("off"); any other value, or none, leaves it on.
const Env = "NITROVM_FUZZ_SECCOMP"

// Main is a TestMain body: in a fuzzing worker (-test.fuzzworker, the
// process that runs the fuzz target), it installs jail.Filter(kill) with
// jail.FuzzWorkerExtra before running the tests. The coordinator (the
// process started by go test -fuzz, which forks and feeds the workers) and
// plain test runs stay unfiltered.
func Main(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" && os.Getenv(Env) != "off" {
		if err := jail.InstallSeccompExtra(jail.ActionKill, jail.FuzzWorkerExtra); err != nil {
			fmt.Fprintln(os.Stderr, "jailtest:", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

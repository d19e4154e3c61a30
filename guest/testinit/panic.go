package main

import "os"

// panicKernel makes init exit, which the kernel answers with
// "Kernel panic - not syncing: Attempted to kill init!". The VMM should see
// the panic and exit with status 3.
func panicKernel(r *report) error {
	r.kv("panic", "now")
	os.Exit(1)
	return nil
}

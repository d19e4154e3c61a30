package main

import "os"

// panicKernel makes init exit, which the kernel answers with
// "Kernel panic - not syncing: Attempted to kill init!". The VMM should see
// the panic and exit with status 3.
func panicKernel(r *report) error {
	r.kv("panic", "now")
	// Otherwise the tty may still be sending this line when the kernel
	// prints its panic, and the two interleave: "NITROVM-TEST p[ 4.27]
	// Kernelanic= panic - not syncing", where the VMM finds no panic line
	// (CI on 8bb627b; the VM then rebooted after panic=30).
	drainConsole()
	os.Exit(1)
	return nil
}

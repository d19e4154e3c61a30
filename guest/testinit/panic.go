package main

import "os"

// panicKernel makes init exit, which the kernel answers with
// "Kernel panic - not syncing: Attempted to kill init!". The VMM should see
// the panic and exit with status 3.
func panicKernel(r *report) error {
	r.kv("panic", "now")
	// Otherwise the tty may still be sending this line when the kernel
	// prints its panic, and the two interleave on the console:
	// "NITROVM-TEST p[ 4.27] Kernelanic= panic - not syncing" (CI on
	// 8bb627b). The VMM, which reads each vCPU's lines apart, finds the
	// panic either way; draining keeps this report line whole.
	drainConsole()
	os.Exit(1)
	return nil
}

package main

import "time"

// stall prints "NITROVM-TEST stall" and then idles forever. Alone, it is a
// guest that boots but never sends the Nitro heartbeat, so that
// run-enclave's supervisor gives up after --heartbeat-timeout and dumps
// the VM's state (test/e2e's TestJail checks that the dump reaches the
// command's output); after "heartbeat", it is an enclave that stays up
// until it is terminated. It sleeps rather than blocking on nothing, which
// the Go runtime would end as a deadlock, making init exit.
func stall(r *report) error {
	r.line("stall")
	for {
		time.Sleep(time.Hour)
	}
}

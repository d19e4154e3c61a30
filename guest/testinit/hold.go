package main

import "time"

// holdFor is how long the "hold" check keeps the guest up.
const holdFor = 3 * time.Second

// hold prints "NITROVM-TEST hold" and then idles for holdFor, so that a
// benchmark can read the VMM's KVM counters while the guest is still up
// (scripts/bench-boot.sh: right after "done" the guest reboots and the
// VM, with its counters, is gone).
func hold(r *report) error {
	r.line("hold")
	time.Sleep(holdFor)
	return nil
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

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

// Constants of panicNoisy.
const (
	noisyBytes     = 8192 // more than the tty's transmit buffer, 4 KiB.
	noisyHeadStart = 100 * time.Millisecond
)

// panicNoisy makes init exit on CPU 0 while the console tty is sending a
// long line without a newline, its interrupt routed to CPU 1. The kernel's
// panic line then follows thousands of bytes of that unfinished line on
// the console: closing the tty as init exits sends some of what the tty
// holds first, so the panic line usually comes after the tty's bytes
// rather than among them (among them is the unit tests' replay of a CI
// console). The VMM must still report the panic (exit status 3), at once
// rather than as a reboot after panic=30.
func panicNoisy(r *report) error {
	if runtime.NumCPU() < 2 {
		return errors.New("needs 2 CPUs")
	}
	interrupts, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return err
	}
	irq, err := serialIRQ(string(interrupts))
	if err != nil {
		return err
	}
	if err := os.WriteFile("/proc/irq/"+irq+"/smp_affinity_list", []byte("1"), 0); err != nil {
		return fmt.Errorf("route the serial interrupt to CPU 1: %w", err)
	}
	runtime.LockOSThread() // init exits from this thread, on CPU 0.
	if err := pinThread(0); err != nil {
		return err
	}
	r.kv("panic", "noisy")
	drainConsole()
	go func() {
		runtime.LockOSThread()
		_ = pinThread(1)
		// Blocks until all but the tty's last 4 KiB are sent; exiting
		// kills it.
		_, _ = os.Stdout.Write(bytes.Repeat([]byte("z"), noisyBytes))
	}()
	time.Sleep(noisyHeadStart)
	os.Exit(1)
	return nil
}

// pinThread confines the calling thread to CPU cpu.
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

// serialIRQ returns the Linux IRQ number of the console UART's handler
// (named after the port, "ttyS0"; "serial" in older kernels) in a
// /proc/interrupts listing: with ACPI's hardware-reduced platform the
// UART's ISA IRQ 4 is mapped to another number (24).
func serialIRQ(interrupts string) (string, error) {
	for _, l := range strings.Split(interrupts, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && (f[len(f)-1] == "ttyS0" || f[len(f)-1] == "serial") {
			if n, ok := strings.CutSuffix(f[0], ":"); ok {
				return n, nil
			}
		}
	}
	return "", fmt.Errorf("no ttyS0 interrupt in /proc/interrupts: %q", interrupts)
}

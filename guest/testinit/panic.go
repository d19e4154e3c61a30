package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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
	noiseEnv       = "NITROVM_TESTINIT_NOISE" // set: testinit is panicNoisy's writer.
	noiseCPU       = 1
	noisyHeadStart = 100 * time.Millisecond
)

// panicNoisy makes init exit on CPU 0 while another process on CPU 1 keeps
// writing one long line without a newline to the console tty, whose
// interrupt is routed to CPU 1. The kernel prints its panic line from CPU
// 0 by polling the UART without waiting for the port's lock, while CPU
// 1's interrupt handler keeps sending the tty's bytes, so on the console
// the panic line follows thousands of bytes of an unfinished line and may
// have tty bytes in its middle. (Init writing the line itself would not
// do: its exit kills the writing thread first.) The VMM must still report
// the panic (exit status 3), at once rather than as a reboot after
// panic=30.
func panicNoisy(r *report) error {
	if runtime.NumCPU() <= noiseCPU {
		return fmt.Errorf("needs %d CPUs", noiseCPU+1)
	}
	interrupts, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return err
	}
	irq, err := serialIRQ(string(interrupts))
	if err != nil {
		return err
	}
	if err := os.WriteFile("/proc/irq/"+irq+"/smp_affinity_list", []byte(strconv.Itoa(noiseCPU)), 0); err != nil {
		return fmt.Errorf("route the serial interrupt to CPU %d: %w", noiseCPU, err)
	}
	runtime.LockOSThread() // init exits from this thread, on CPU 0.
	if err := pinThread(0); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	writer := exec.Command(self)
	writer.Env = append(os.Environ(), noiseEnv+"=1")
	writer.Stdout = os.Stdout
	r.kv("panic", "noisy")
	drainConsole()
	if err := writer.Start(); err != nil {
		return fmt.Errorf("start the writer: %w", err)
	}
	time.Sleep(noisyHeadStart)
	os.Exit(1)
	return nil
}

// noise is panicNoisy's writer: on CPU noiseCPU, it writes 'z' to
// standard output, without a newline, until it is killed.
func noise() {
	runtime.LockOSThread()
	_ = pinThread(noiseCPU)
	b := bytes.Repeat([]byte("z"), 256)
	for {
		if _, err := os.Stdout.Write(b); err != nil {
			return
		}
	}
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

// Command testinit is the /init of nitrovm's test enclaves (the L2 guests of
// the end-to-end tests). It mounts /proc, /sys and /dev, prints what it sees
// as machine-readable console lines, runs the checks named on the kernel
// command line and reboots the guest.
//
// Every line it prints for tests starts with "NITROVM-TEST ". The checks to
// run come from the kernel parameter nitrovm.test=NAME[,NAME...] (default
// "sysinfo"). Each check prints "NITROVM-TEST check=NAME result=ok" or
// "result=fail err=...". The run ends with "NITROVM-TEST done failures=N",
// then the guest reboots (the VMM exits 0), unless the "panic" or
// "panic-noisy" check made init exit, which panics the kernel, or the
// "stall" check idles forever.
//
// With nitrovm.report=PORT, every NITROVM-TEST line also goes to a vsock
// connection to the parent (CID 3) port PORT, dialed before the first
// check other than "heartbeat" (or before "done"), so that a
// production-mode enclave, which has no console, can report; the lines
// printed before the dial are sent first. If the dial fails, the report
// goes to the console only. Before rebooting, testinit shuts down its
// sending side and waits for the parent to close the connection.
//
// Before the checks it loads the kernel modules listed in /modules.list,
// if the ramdisk has one (see modules.go).
//
// To add a check, write a func(*report) error in its own file and add one
// entry to the checks map in main.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/pseudofs"
)

// linePrefix starts every machine-readable line testinit prints.
const linePrefix = "NITROVM-TEST "

// report prints machine-readable lines on the console and, once attached,
// on a report channel to the parent (see report.go).
type report struct {
	w     io.Writer
	start time.Time
	// lines holds every line printed before the channel was dialed.
	lines bytes.Buffer
	// dialed is set once the channel was dialed, successfully or not.
	dialed bool
	// sink is the report channel, nil when there is none.
	sink reportConn
}

// kv prints one "NITROVM-TEST key=value" line.
func (r *report) kv(key, format string, args ...any) {
	r.line(key + "=" + fmt.Sprintf(format, args...))
}

// logf prints a free-form line that tests ignore.
func (r *report) logf(format string, args ...any) {
	fmt.Fprintf(r.w, "testinit: "+format+"\n", args...)
}

func main() {
	if os.Getenv(noiseEnv) != "" {
		noise()
		return
	}
	r := &report{w: os.Stdout, start: time.Now()}
	checks := map[string]func(*report) error{
		"sysinfo":     sysinfo,
		"panic":       panicKernel,
		"panic-noisy": panicNoisy,
		"heartbeat":   heartbeat,
		"vsock-echo":  vsockEcho,
		"nsm":         nsmCheck,
		"hold":        hold,
		"stall":       stall,
	}
	if err := pseudofs.MountAll(pseudofs.Basic()); err != nil {
		r.logf("mount: %v", err)
	}
	// From here on the console carries the report: kernel messages (the
	// clocksource watchdog's warnings under nested emulation, for one) would
	// otherwise land in the middle of long lines such as the attestation
	// document. Only KERN_EMERG, which includes "Kernel panic", still shows.
	if err := os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0); err != nil {
		r.logf("quiet the kernel console: %v", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		r.logf("read /proc/cmdline: %v", err)
	}
	names := testNames(string(cmdline))
	port, toParent := reportPort(string(cmdline))
	failures := 0
	if err := loadModules(r, modulesList); err != nil {
		r.kv("modules", "fail err=%s", oneLine(err.Error()))
		failures++
	}
	for _, name := range names {
		if toParent && name != "heartbeat" {
			r.connect(port)
		}
		fn, ok := checks[name]
		if !ok {
			r.kv("check", "%s result=fail err=unknown check", name)
			failures++
			continue
		}
		if err := fn(r); err != nil {
			r.kv("check", "%s result=fail err=%s", name, oneLine(err.Error()))
			failures++
			continue
		}
		r.kv("check", "%s result=ok", name)
	}
	if toParent {
		r.connect(port)
	}
	r.line(fmt.Sprintf("done failures=%d", failures))
	r.close()
	// reboot does not wait for the console: the kernel's own "reboot:"
	// line would otherwise cut into the report's last lines, or they would
	// be lost.
	drainConsole()
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		r.logf("reboot: %v", err)
	}
	select {} // init must not exit: that panics the kernel.
}

// testNames returns the checks requested by nitrovm.test= on the kernel
// command line, or just "sysinfo" when none are.
func testNames(cmdline string) []string {
	var names []string
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "nitrovm.test=")
		if !ok {
			continue
		}
		for _, n := range strings.Split(v, ",") {
			if n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		names = []string{"sysinfo"}
	}
	return names
}

// oneLine folds s onto one line so a report line stays parseable.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// drainConsole waits until the console tty has sent everything written to
// it (tcdrain). The kernel writes its own console lines (reboot, panic) by
// polling the UART, past the tty: what the tty still holds then comes out
// interleaved with them, byte by byte.
func drainConsole() {
	_ = unix.IoctlSetInt(int(os.Stdout.Fd()), unix.TCSBRK, 1)
}

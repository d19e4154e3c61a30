// Package nested runs commands inside a nested Linux VM (L1) that has a
// working /dev/kvm, so that nitrovm can boot real Linux guests (L2) on
// machines whose own KVM cannot: QEMU's TCG with "-cpu max" emulates AMD SVM
// with nested paging, and the L1 Linux (Debian's 6.12 cloud kernel) loads
// kvm-amd on it. Run builds an initramfs holding the nitrovm binary (which
// is also L1's init, see package l1init), the KVM and vsock modules, busybox
// and the caller's files, boots QEMU, streams init's console (ttyS0) and
// L1's kernel console (ttyS1) apart, and returns the command's exit status.
//
// Run boots L1 once; it never retries. When L1 itself fails (its kernel
// oopses or panics, it freezes, or the command fails showing L1's state in
// a guest vCPU: see Fault) the Result says so, with the evidence, so that
// a caller may decide to run the session again; any other failure is the
// command's.
//
// A guest triple fault shows nitrovm only the reset vCPU (L1's kvm-amd
// resets it on the SVM SHUTDOWN intercept), so L1's init records each
// SHUTDOWN exit's guest rip with the kvm:kvm_exit tracepoint, and the
// vCPU's CR3 with a probe, and prints them with L1's module ranges after a
// failed command (EvidenceShell does the same between the commands of a
// script). A triple fault at a rip inside an L1 module, or with a CR3
// outside guest RAM, is L1's state in the guest (L1TripleFault); one at a
// guest rip on the guest's own page tables is the command's failure.
//
// # Requirements
//
// Everything comes from Debian apt and is cached under
// ${NITROVM_CACHE:-$HOME/.cache/nitrovm}:
//
//	scripts/deps.sh               # qemu-system-x86, busybox-static, kernel build tools
//	scripts/kernel/l1-kernel.sh   # L1 kernel + modules -> $cache/l1/current
//	scripts/kernel/build-guest.sh # guest (enclave) bzImage; prints its path
//
// # Usage
//
//	res, err := nested.Run(ctx, nested.Options{
//		Nitrovm: "bin/nitrovm", // static; becomes /bin/nitrovm in L1
//		Files:   map[string]string{"/guest/bzImage": bzImage, "/guest/initrd": initrd},
//		Command: []string{"nitrovm", "boot", "--kernel", "/guest/bzImage",
//			"--initrd", "/guest/initrd", "--cmdline", "console=ttyS0"},
//		Output:       os.Stdout, // init's lines and the command's output, live
//		KernelOutput: os.Stderr, // L1's kernel console, live
//	})
//	// res.ExitCode is the command's exit status; res.Output the whole
//	// console; res.Fault non-nil if L1 itself failed.
//
// The command runs as root with PATH=/bin:/sbin:/usr/bin:/usr/sbin, in
// /root; busybox applets (sh, grep, ...) are there when busybox-static is
// installed. Booting L1 costs about 8 s, so batch several steps into one
// command (for example "sh -c '...; ...'") where possible. The same is
// available from the command line:
//
//	nitrovm nested --file /demo.eif=./demo.eif -- nitrovm boot --eif-path /demo.eif
package nested

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/nested/l1init"
)

// Defaults for Options fields left zero.
const (
	// DefaultMemoryMiB is L1's RAM. TCG allocates it lazily.
	DefaultMemoryMiB = 4096
	// DefaultCPUs is L1's vCPU count: CPU 0 for L1's own work, and two
	// for the command and its guests, which l1init keeps off CPU 0 (see
	// l1init.Config.CPU0).
	DefaultCPUs = 3
	// DefaultCPU is L1's QEMU CPU model: every feature TCG emulates,
	// SVM with nested paging included, except 5-level paging (LA57). The
	// emulator's faults (an L2 vCPU running on L1's state, whose stack
	// pointer was valid only under L1's 5-level paging; reserved-bit page
	// faults on a guest's instruction fetch) were fewer without it: three
	// e2e runs met 0, 2 and 3 L1 faults, where nine runs with LA57 the
	// same day met 2 to 5 each (docs/multi-vcpu.md). Not a cure.
	DefaultCPU = "max,-la57"
	// DefaultTimeout bounds a whole run, L1 boot included.
	DefaultTimeout = 15 * time.Minute
	// DefaultFreezeAfter is how long L1's init may miss its once-a-second
	// tick before L1 counts as frozen. Generous: a loaded host slows TCG
	// down, but a frozen L1 never ticks again.
	DefaultFreezeAfter = 90 * time.Second
)

// Paths in L1.
const (
	// NitrovmPath is where the nitrovm binary is put; it is also L1's init.
	NitrovmPath = "/bin/nitrovm"
	// busyboxPath is where busybox goes; init installs its applet links.
	busyboxPath = "/bin/busybox"
	// modulesPath holds the kernel modules init loads.
	modulesPath = "/lib/modules/nested"
)

// Options describes one nested run.
type Options struct {
	// Nitrovm is the host path of a static nitrovm binary. Required: it is
	// copied to /bin/nitrovm and runs as L1's init ("nested --l1init").
	Nitrovm string
	// Files maps absolute L1 paths to host files copied there (EIFs,
	// kernels, scripts). Executable host files stay executable.
	Files map[string]string
	// Command is what to run in L1, as root; PATH includes /bin.
	Command []string
	// Env adds "K=V" entries to the command's environment; see ValidateEnv.
	Env []string
	// MemoryMiB is L1's RAM; 0 means DefaultMemoryMiB.
	MemoryMiB int
	// CPUs is L1's vCPU count; 0 means DefaultCPUs.
	CPUs int
	// CommandOnCPU0 lets the command and its guests run on L1's CPU 0
	// too (l1init.Config.CPU0); by default they do not.
	CommandOnCPU0 bool
	// OnlyVCPUsOffCPU0 keeps only nitrovm's vCPU threads off L1's CPU 0
	// (l1init.Config.OnlyVCPUsOffCPU0): the rest of the command may use
	// it. For commands whose only VMM is nitrovm.
	OnlyVCPUsOffCPU0 bool
	// Timeout bounds the run; 0 means DefaultTimeout.
	Timeout time.Duration
	// Output receives the L1 console (kernel errors, init's lines, the
	// command's stdout and stderr) as it arrives; nil discards it.
	Output io.Writer
	// Logger gets progress and timings; nil discards them.
	Logger *slog.Logger

	// CacheDir is where the scripts cache kernels; empty means
	// DefaultCacheDir(os.Getenv).
	CacheDir string
	// QEMU is the emulator; empty means qemu-system-x86_64 on PATH.
	QEMU string
	// CPU is QEMU's -cpu model for L1; empty means $NITROVM_NESTED_CPU,
	// or DefaultCPU when that is unset.
	CPU string
	// Kernel is L1's vmlinuz; empty means CacheDir/l1/current/vmlinuz.
	Kernel string
	// ModulesDir is the module tree matching Kernel (with modules.dep);
	// empty means CacheDir/l1/current/modules.
	ModulesDir string
	// Modules names the modules to load; nil means DefaultModules().
	Modules []string
	// Busybox is a static busybox for L1; empty means /bin/busybox when
	// present, "none" means no busybox.
	Busybox string
	// KernelLog logs L1's kernel messages of every level instead of
	// warnings and worse.
	KernelLog bool
	// KernelOutput receives L1's kernel console (a separate serial port,
	// ttyS1) as it arrives; nil discards it. Result.KernelLog has it all.
	KernelOutput io.Writer
	// FreezeAfter is how long init's ticks may stop, once started, while
	// the command runs before L1 counts as frozen and is stopped; 0 means
	// DefaultFreezeAfter.
	FreezeAfter time.Duration
	// WarnOldQEMU runs "QEMU --version" first and logs a warning when it
	// is older than MinQEMU.
	WarnOldQEMU bool
}

// Result is the outcome of a run.
type Result struct {
	// ExitCode is the command's exit status (l1init.ExitSetupFailed when
	// L1 could not be set up, 128+N when killed by signal N).
	ExitCode int
	// Output is init's console (ttyS0): init's lines and the command's
	// output, with "\r\n" turned into "\n".
	Output string
	// KernelLog is L1's kernel console (ttyS1), kept apart from Output.
	KernelLog string
	// Fault is set when L1 itself failed during the run (its kernel oopsed
	// or panicked, it froze, or the command failed with L1's state in a
	// guest vCPU): see Fault. It may be set even when the command finished.
	Fault *Fault
	// Boot is the time from starting QEMU to L1's init starting the
	// command; Total is the whole run including QEMU's exit.
	Boot, Total time.Duration
}

// DefaultCacheDir returns ${NITROVM_CACHE:-$HOME/.cache/nitrovm} using
// getenv to read the environment.
func DefaultCacheDir(getenv func(string) string) string {
	if d := getenv("NITROVM_CACHE"); d != "" {
		return d
	}
	home := getenv("HOME")
	if home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "nitrovm")
}

// Run boots L1 under QEMU, runs opts.Command there and returns its exit
// status. An error means the command's status is unknown: QEMU or a file is
// missing, the run timed out, or L1 ended without reporting.
func Run(ctx context.Context, opts Options) (Result, error) {
	o, err := withDefaults(opts)
	if err != nil {
		return Result{}, err
	}
	log := o.Logger
	start := time.Now()
	if o.WarnOldQEMU {
		warnOldQEMU(ctx, o)
	}

	tmp, err := os.MkdirTemp("", "nitrovm-nested-")
	if err != nil {
		return Result{}, fmt.Errorf("nested: %w", err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := buildInitramfs(initrd, o); err != nil {
		return Result{}, err
	}
	if fi, err := os.Stat(initrd); err == nil {
		log.Debug("nested: initramfs built", "bytes", fi.Size(), "took", time.Since(start).Round(time.Millisecond))
	}

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	return boot(ctx, o, tmp, initrd, start)
}

// boot runs QEMU once: ttyS0 (stdio) carries init's lines and the
// command's output, ttyS1 (a file) L1's kernel console, ttyS2 (a file)
// init's ticks, which a watcher follows to notice a frozen L1.
func boot(ctx context.Context, o Options, tmp, initrd string, start time.Time) (res Result, err error) {
	kernelPath, ticksPath := filepath.Join(tmp, "l1-kernel.log"), filepath.Join(tmp, "l1-ticks.log")
	args := qemuArgs(o, initrd, kernelPath, ticksPath)
	o.Logger.Debug("nested: starting QEMU", "cmd", o.QEMU+" "+strings.Join(args, " "))
	qctx, kill := context.WithCancelCause(ctx)
	defer kill(nil)
	cmd := exec.CommandContext(qctx, o.QEMU, args...)
	cmd.Stdin = nil
	cons := &console{out: o.Output}
	cmd.Stdout = cons
	cmd.Stderr = cons
	cmd.WaitDelay = 5 * time.Second
	qemuStart := time.Now()
	w := newWatcher(kernelPath, ticksPath, o.KernelOutput, o.FreezeAfter, cons, kill)
	runErr := cmd.Start()
	if runErr == nil {
		w.start()
		runErr = cmd.Wait()
	}
	w.stop()
	res = Result{Output: cons.text(), KernelLog: w.kernelLog(), Total: time.Since(start)}
	ready := false
	if t := cons.readyAt(); !t.IsZero() {
		res.Boot = t.Sub(qemuStart)
		ready = true
	}
	o.Logger.Info("nested: L1 run finished", "boot", res.Boot.Round(time.Millisecond), "total", res.Total.Round(time.Millisecond))

	code, marked := exitStatus(res.Output)
	res.Fault = classify(observed{kernelLog: res.KernelLog, frozen: w.frozen(), reset: ready && runErr == nil && !marked,
		output: res.Output, exitCode: code, exited: marked})
	var fault error = noFault{}
	if res.Fault != nil {
		fault = res.Fault
	}
	switch {
	case res.Fault != nil && res.Fault.Class == FaultL1Freeze:
		return res, fmt.Errorf("nested: %w (last output: %s)", fault, tail(res.Output, 5))
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("nested: timed out after %v%s (last output: %s)", o.Timeout, faultNote(res.Fault), tail(res.Output, 5))
	case ctx.Err() != nil:
		return res, fmt.Errorf("nested: stopped: %w%s (last output: %s)", context.Cause(ctx), faultNote(res.Fault), tail(res.Output, 5))
	}
	if !marked {
		if res.Fault != nil {
			return res, fmt.Errorf("nested: L1 ended without an exit status: %w (last output: %s)", fault, tail(res.Output, 10))
		}
		if runErr != nil {
			return res, fmt.Errorf("nested: %s: %w (last output: %s)", o.QEMU, runErr, tail(res.Output, 10))
		}
		return res, fmt.Errorf("nested: L1 ended without an exit status (last output: %s)", tail(res.Output, 10))
	}
	res.ExitCode = code
	return res, nil
}

// noFault stands in for a nil *Fault where an error is needed.
type noFault struct{}

func (noFault) Error() string { return "no fault" }

// faultNote returns ", after <fault>" for a non-nil fault, else "".
func faultNote(f *Fault) string {
	if f == nil {
		return ""
	}
	return ", after " + f.Error()
}

// exitStatus finds the last "NITROVM-NESTED-EXIT <code>" line in out.
func exitStatus(out string) (int, bool) {
	code, found := 0, false
	for _, line := range strings.Split(out, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), l1init.ExitMarker+" ")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil {
			code, found = n, true
		}
	}
	return code, found
}

func withDefaults(o Options) (Options, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemoryMiB
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.MemoryMiB < 256 || o.CPUs < 1 {
		return o, fmt.Errorf("nested: need at least 256 MiB and 1 CPU, got %d MiB, %d CPUs", o.MemoryMiB, o.CPUs)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FreezeAfter == 0 {
		o.FreezeAfter = DefaultFreezeAfter
	}
	if o.KernelOutput == nil {
		o.KernelOutput = io.Discard
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir(os.Getenv)
	}
	if o.CPU == "" {
		o.CPU = os.Getenv("NITROVM_NESTED_CPU")
	}
	if o.CPU == "" {
		o.CPU = DefaultCPU
	}
	if o.Modules == nil {
		o.Modules = DefaultModules()
	}
	if err := ValidateEnv(o.Env); err != nil {
		return o, err
	}
	if o.Nitrovm == "" {
		return o, errors.New("nested: Options.Nitrovm (the nitrovm binary) is required")
	}
	if err := checkStatic(o.Nitrovm); err != nil {
		return o, err
	}
	if o.QEMU == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return o, errors.New("nested: qemu-system-x86_64 not found; run scripts/deps.sh (Debian: apt-get install qemu-system-x86)")
		}
		o.QEMU = p
	}
	if o.Kernel == "" {
		o.Kernel = filepath.Join(o.CacheDir, "l1", "current", "vmlinuz")
	}
	if o.ModulesDir == "" {
		o.ModulesDir = filepath.Join(o.CacheDir, "l1", "current", "modules")
	}
	for _, p := range []string{o.Kernel, filepath.Join(o.ModulesDir, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return o, fmt.Errorf("nested: L1 kernel missing (%w); run scripts/kernel/l1-kernel.sh", err)
		}
	}
	switch o.Busybox {
	case "none":
		o.Busybox = ""
	case "":
		if _, err := os.Stat("/bin/busybox"); err == nil && checkStatic("/bin/busybox") == nil {
			o.Busybox = "/bin/busybox"
		}
	}
	for dst := range o.Files {
		if !path.IsAbs(dst) {
			return o, fmt.Errorf("nested: L1 path %q must be absolute", dst)
		}
	}
	return o, nil
}

// ValidateEnv checks that each entry of env is "K=V" with a non-empty K
// that has no '=', and that neither K nor V holds a NUL or newline (the
// value may be empty and may contain '=').
func ValidateEnv(env []string) error {
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return fmt.Errorf("nested: env %q: want K=V", kv)
		case k == "":
			return fmt.Errorf("nested: env %q: empty name", kv)
		case strings.ContainsAny(kv, "\x00\n"):
			return fmt.Errorf("nested: env %q: contains NUL or newline", kv)
		}
	}
	return nil
}

// checkStatic fails if the ELF file at p needs a dynamic loader, which L1
// does not have.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("nested: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("nested: %s is dynamically linked; build it with CGO_ENABLED=0", p)
		}
	}
	return nil
}

// buildInitramfs writes L1's initramfs to dst.
func buildInitramfs(dst string, o Options) error {
	order, err := moduleOrder(o.ModulesDir, o.Modules)
	if err != nil {
		return fmt.Errorf("nested: %w", err)
	}
	cfg := l1init.Config{Command: o.Command, Env: o.Env, CPU0: o.CommandOnCPU0, OnlyVCPUsOffCPU0: o.OnlyVCPUsOffCPU0}
	entries := []Entry{{Name: NitrovmPath, HostPath: o.Nitrovm, Mode: 0o755}}
	for _, m := range order {
		name := path.Join(modulesPath, path.Base(m))
		entries = append(entries, Entry{Name: name, HostPath: filepath.Join(o.ModulesDir, m)})
		cfg.Modules = append(cfg.Modules, name)
	}
	if o.Busybox != "" {
		entries = append(entries, Entry{Name: busyboxPath, HostPath: o.Busybox, Mode: 0o755})
	}
	for l1Path, host := range o.Files {
		entries = append(entries, Entry{Name: l1Path, HostPath: host})
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("nested: %w", err)
	}
	entries = append(entries, Entry{Name: l1init.ConfigPath, Data: b})
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("nested: %w", err)
	}
	if err := WriteCPIO(f, entries); err != nil {
		f.Close()
		return fmt.Errorf("nested: initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("nested: initramfs: %w", err)
	}
	return nil
}

// qemuArgs returns QEMU's command line: TCG with every CPU feature (SVM and
// NPT included), three serial ports and no other devices, and -no-reboot
// so that L1's reboot ends QEMU. ttyS0 is stdio (init and the command),
// ttyS1 the file kernelLog (L1's kernel console: console= names it, so
// kernel messages never mix with the command's output), ttyS2 the file
// ticks (init's heartbeat, see l1init.TickDevice).
//
// TCG stays multi-threaded (one host thread per L1 vCPU). Single-threaded
// TCG ("-accel tcg,thread=single") switches L1 vCPUs only every 100 ms, and
// an L2 guest whose vCPUs wait on each other then stalls: measured here, a
// 4-vCPU L2 boot hung at SMP bring-up for its whole 120 s limit, where
// multi-threaded TCG boots it to /init in 3 to 8 s.
func qemuArgs(o Options, initrd, kernelLog, ticks string) []string {
	// 5 shows warnings and worse: an oops header ("Oops: ...") is printed
	// at the default level, 4.
	loglevel := "loglevel=5"
	if o.KernelLog {
		loglevel = "loglevel=7"
	}
	cmdline := strings.Join([]string{
		"console=ttyS1", loglevel, "panic=-1", "mitigations=off", "random.trust_cpu=on",
		"rdinit=" + NitrovmPath, "--", "nested", "--l1init",
	}, " ")
	return []string{
		"-nodefaults", "-no-user-config",
		"-machine", "q35", "-accel", "tcg", "-cpu", o.CPU,
		"-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-display", "none", "-monitor", "none", "-nic", "none",
		"-serial", "stdio", "-serial", "file:" + kernelLog, "-serial", "file:" + ticks,
		"-no-reboot",
		"-kernel", o.Kernel, "-initrd", initrd, "-append", cmdline,
	}
}

// console collects QEMU's output, forwards it without carriage returns and
// notes when init starts the command.
type console struct {
	mu    sync.Mutex
	out   io.Writer
	buf   bytes.Buffer
	ready time.Time
	ended bool // the exit marker arrived
}

// readyLine is printed by l1init just before it starts the command.
const readyLine = "nested: L1 ready"

// Write implements io.Writer.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clean := bytes.ReplaceAll(p, []byte("\r"), nil)
	n := c.buf.Len()
	c.buf.Write(clean)
	if c.ready.IsZero() {
		from := max(0, n-len(readyLine))
		if bytes.Contains(c.buf.Bytes()[from:], []byte(readyLine)) {
			c.ready = time.Now()
		}
	}
	if !c.ended {
		from := max(0, n-len(l1init.ExitMarker))
		c.ended = bytes.Contains(c.buf.Bytes()[from:], []byte(l1init.ExitMarker))
	}
	_, _ = c.out.Write(clean) // a failing observer must not stop L1
	return len(p), nil
}

func (c *console) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// finished reports whether init printed the exit marker.
func (c *console) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

func (c *console) readyAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// tail returns the last n non-empty lines of s joined by " | ".
func tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

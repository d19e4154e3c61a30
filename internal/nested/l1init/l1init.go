// Package l1init is the /init of the nested harness's L1 Linux (see package
// nested). The nitrovm binary runs it as PID 1 inside QEMU when started as
// "nitrovm nested --l1init" (kernel cmdline "rdinit=/bin/nitrovm -- nested
// --l1init"): it mounts the pseudo file systems, loads the KVM and vsock
// modules, brings up lo, runs the configured command, prints
// "NITROVM-NESTED-EXIT <code>" and reboots, which ends QEMU (-no-reboot).
// It records L2 triple faults (SVM SHUTDOWN exits) with a kernel
// tracepoint and the vCPU's CR3 with a probe (CR3Event), and prints them,
// with L1's module ranges, after a failed command (ShutdownMarker,
// ModuleMarker).
//
// Init's lines and the command's output go to ttyS0; the kernel's console
// is ttyS1 (package nested keeps the two apart), and init writes a tick to
// ttyS2 once a second so that the host can tell a frozen L1 from a slow
// command. As PID 1 it reaps every orphan that exits while the command
// runs (detached enclave supervisors, for one), so none stays a zombie.
package l1init

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/enclave"
	"github.com/nitrovm/nitrovm/internal/kmod"
	"github.com/nitrovm/nitrovm/internal/kvm"
	"github.com/nitrovm/nitrovm/internal/pseudofs"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// ConfigPath is where package nested puts the Config in the L1 initramfs.
const ConfigPath = "/etc/nitrovm-nested.json"

// ExitMarker starts the console line carrying the command's exit status,
// "NITROVM-NESTED-EXIT 0". Package nested parses it.
const ExitMarker = "NITROVM-NESTED-EXIT"

// Serial devices init uses: ConsoleDevice for its lines and the command's
// output, TickDevice for its ticks ("tick N uptime U"). The kernel console
// is ttyS1.
const (
	ConsoleDevice = "/dev/ttyS0"
	TickDevice    = "/dev/ttyS2"
)

// Exit codes reported in the marker line when the command did not run.
const (
	// ExitSetupFailed means init failed before it could start the command.
	ExitSetupFailed = 125
	// ExitCommandNotRun means the command could not be started.
	ExitCommandNotRun = 127
)

// Config tells init what to do; package nested writes it as JSON.
type Config struct {
	// Modules are kernel module files (.ko or .ko.xz), in load order.
	Modules []string `json:"modules"`
	// Command is the command to run, resolved with PATH.
	Command []string `json:"command"`
	// Env is added to the command's environment ("K=V").
	Env []string `json:"env,omitempty"`
	// Dir is the command's working directory; empty means /root.
	Dir string `json:"dir,omitempty"`
	// CPU0 lets the command run on L1's CPU 0 too. By default, when L1
	// has more than one CPU, the command and every process it starts
	// (guests' vCPU threads included) run on the others only: see
	// commandCPUs.
	CPU0 bool `json:"cpu0,omitempty"`
	// OnlyVCPUsOffCPU0 keeps only nitrovm's vCPU threads off CPU 0: the
	// command runs on every CPU, with NITROVM_VCPU_CPUS naming the others
	// (unless Env sets it), so the VMM's device threads can use CPU 0
	// while the guests keep L1's other CPUs busy. Only for commands that
	// start no other VMM (a QEMU inside L1 would put guests on CPU 0).
	// Ignored with CPU0.
	OnlyVCPUsOffCPU0 bool `json:"only_vcpus_off_cpu0,omitempty"`
}

// Main runs init and never returns (it reboots). Output goes to the
// console.
func Main() {
	console := setupConsole()
	go tick(console)
	start := time.Now()
	code := run(console)
	writeEvidence(console, TraceDir, ModulesFile, code != 0)
	fmt.Fprintf(console, "nested: L1 command finished in %.1fs\n", time.Since(start).Seconds())
	fmt.Fprintf(console, "\n%s %d\n", ExitMarker, code)
	unix.Sync()
	// Reboot, not halt: with -no-reboot QEMU exits; a halted L1 hangs QEMU.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		fmt.Fprintf(console, "nested: reboot: %v\n", err)
	}
	select {}
}

func run(console io.Writer) int {
	if err := mountAll(); err != nil {
		fmt.Fprintf(console, "nested: %v\n", err)
		return ExitSetupFailed
	}
	b, err := os.ReadFile(ConfigPath)
	if err != nil {
		fmt.Fprintf(console, "nested: read config: %v\n", err)
		return ExitSetupFailed
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintf(console, "nested: parse %s: %v\n", ConfigPath, err)
		return ExitSetupFailed
	}
	for _, m := range cfg.Modules {
		if err := kmod.Load(m); err != nil {
			fmt.Fprintf(console, "nested: %v\n", err)
			return ExitSetupFailed
		}
	}
	if err := traceShutdowns(TraceDir); err != nil {
		fmt.Fprintf(console, "nested: %v (L2 triple faults cannot be classified)\n", err)
	}
	if err := loopbackUp(); err != nil {
		fmt.Fprintf(console, "nested: %v\n", err)
	}
	pin, err := pinKVM()
	defer pin.close()
	if err != nil {
		fmt.Fprintf(console, "nested: %v\n", err)
		return ExitSetupFailed
	}
	if _, err := os.Stat("/bin/busybox"); err == nil {
		out, err := exec.Command("/bin/busybox", "--install", "-s").CombinedOutput()
		if err != nil {
			fmt.Fprintf(console, "nested: busybox --install: %v: %s\n", err, out)
		}
	}
	if len(cfg.Command) == 0 {
		fmt.Fprintln(console, "nested: no command")
		return 0
	}
	env := []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root", "TERM=dumb"}
	env = append(env, cfg.Env...)
	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Env = env
	cmd.Dir = cfg.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/root"
	}
	if p, err := lookPath(cfg.Command[0]); err == nil {
		cmd.Path = p
		cmd.Err = nil
	}
	cmd.Stdin = nil
	cmd.Stdout = console
	cmd.Stderr = console
	uptime, _ := os.ReadFile("/proc/uptime")
	fmt.Fprintf(console, "nested: L1 ready (uptime %s s), running %s\n",
		strings.Fields(string(uptime) + " ?")[0], strings.Join(cfg.Command, " "))
	avoidCPU0 := !cfg.CPU0
	if avoidCPU0 && cfg.OnlyVCPUsOffCPU0 {
		avoidCPU0 = false
		cmd.Env = vcpuEnv(cmd.Env, console)
	}
	if err := startCommand(cmd, avoidCPU0, console); err != nil {
		fmt.Fprintf(console, "nested: %v\n", err)
		return ExitCommandNotRun
	}
	ws, err := reapUntil(cmd.Process.Pid)
	switch {
	case err != nil:
		fmt.Fprintf(console, "nested: wait: %v\n", err)
		return ExitCommandNotRun
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		fmt.Fprintf(console, "nested: command killed by %v\n", ws.Signal())
		return 128 + int(ws.Signal())
	}
	return ExitCommandNotRun
}

// reapUntil waits for any child, so that orphans re-parented to init do
// not stay zombies, until pid exits, and returns pid's status. The
// command's cmd.Wait is never called: its stdio are files, so exec has no
// copying goroutines to finish.
func reapUntil(pid int) (syscall.WaitStatus, error) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return ws, err
		case got == pid:
			return ws, nil
		}
	}
}

// tick writes "tick N uptime U" to TickDevice once a second for as long as
// L1 runs; package nested calls L1 frozen when the ticks stop.
func tick(console io.Writer) {
	fd, err := openSerial(TickDevice, unix.O_WRONLY)
	if err != nil {
		fmt.Fprintf(console, "nested: no ticks, the host cannot see a freeze: %v\n", err)
		return
	}
	f := os.NewFile(uintptr(fd), TickDevice)
	for n := 1; ; n++ {
		uptime, _ := os.ReadFile("/proc/uptime")
		fmt.Fprintf(f, "tick %d uptime %s\n", n, strings.Fields(string(uptime) + " ?")[0])
		time.Sleep(time.Second)
	}
}

// lookPath resolves name on init's PATH (exec.LookPath would use init's own
// environment, which has none).
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH", name)
}

// openSerial opens a serial port without becoming its controlling process
// and without waiting for carrier detect (O_NONBLOCK, cleared once open, so
// that writers block as usual).
func openSerial(path string, mode int) (int, error) {
	fd, err := unix.Open(path, mode|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setupConsole makes fds 0-2 ConsoleDevice (not /dev/console, which is the
// kernel's ttyS1) and returns it.
func setupConsole() *os.File {
	_ = os.MkdirAll("/dev", 0o755)
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	fd, err := openSerial(ConsoleDevice, unix.O_RDWR)
	if err != nil {
		if fd, err = unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0); err != nil {
			return os.Stdout
		}
	}
	for i := 0; i < 3; i++ {
		if fd != i {
			_ = unix.Dup3(fd, i, 0)
		}
	}
	if fd > 2 {
		_ = unix.Close(fd)
	}
	return os.NewFile(1, "/dev/console")
}

func mountAll() error {
	if err := pseudofs.MountAll(append(pseudofs.Basic(), pseudofs.Mount{Source: "tmpfs", Target: "/run", FSType: "tmpfs"})); err != nil {
		return err
	}
	for _, d := range []string{"/root", "/var/tmp"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	return nil
}

// loopbackUp sets lo up (IFF_UP) so that 127.0.0.1 works in L1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lo up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: set flags: %w", err)
	}
	return nil
}

// kvmPin is an idle VM that l1init holds for the whole session.
type kvmPin struct {
	sys  *kvm.System
	vm   *kvm.VM
	vcpu *kvm.VCPU
}

// pinKVM checks that /dev/kvm works (API version, a VM with an in-kernel
// irqchip and a vCPU), so that a broken nested setup fails here and not in
// the command, and keeps that VM idle for the whole session.
//
// Keeping it matters: L1's kernel patches its own code whenever some KVM
// static keys change, the preempt-notifier key (in __schedule) when the
// number of VMs goes between 0 and 1, and the deferred apic_sw_disabled key
// when the number of software-disabled LAPICs does. Under QEMU's
// multi-threaded TCG that live patching has crashed L1 ("Oops: int3" in
// __schedule while an enclave VM was being created). With this VM (whose
// LAPIC stays software-disabled) those counts never return to 0, so the
// keys are patched once, here, before anything else runs.
func pinKVM() (*kvmPin, error) {
	p := &kvmPin{}
	var err error
	if p.sys, err = kvm.Open(); err != nil {
		return p, fmt.Errorf("KVM: %w", err)
	}
	if p.vm, err = p.sys.CreateVM(); err != nil {
		return p, fmt.Errorf("KVM: %w", err)
	}
	if err = p.vm.CreateIRQChip(); err != nil {
		return p, fmt.Errorf("KVM: %w", err)
	}
	if p.vcpu, err = p.vm.CreateVCPU(0); err != nil {
		return p, fmt.Errorf("KVM: %w", err)
	}
	return p, nil
}

// close releases the pinned VM.
func (p *kvmPin) close() {
	if p.vcpu != nil {
		p.vcpu.Close()
	}
	if p.vm != nil {
		p.vm.Close()
	}
	if p.sys != nil {
		p.sys.Close()
	}
}

// commandCPUs returns the CPUs the command may run on: all of online but
// CPU 0, or false when that leaves none.
//
// QEMU's TCG (10.0.2, and upstream as read on 2026-12-02) clears the x87
// IGNNE flag of the *first* emulated CPU from whichever vCPU thread
// restores x87 state (cpu_clear_ignne, called by cpu_set_fpus on every
// FRSTOR/FXRSTOR/XRSTOR), a read-modify-write of that CPU's hflags2
// without a lock. When CPU 0 runs a nested guest, the write can undo CPU
// 0's own concurrent update of its nested-paging flag (HF2_NPT_MASK) at
// VMRUN or #VMEXIT: the guest then runs without nested paging and
// triple-faults on its first fetch, or L1 runs with it and its next walk
// becomes a bogus nested page fault that stores L1's state as the guest's
// (docs/nested.md, "QEMU's IGNNE race"). Guests whose vCPUs never run
// on CPU 0 are out of its reach: CPU 0 then never changes those flags,
// so a stale write-back restores what was there.
func commandCPUs(online unix.CPUSet) (unix.CPUSet, bool) {
	set := online
	set.Clear(0)
	return set, set.Count() > 0
}

// vcpuEnv returns env with enclave.VCPUCPUsEnv naming every online CPU but
// CPU 0, unless env sets it already or no CPU would be left.
func vcpuEnv(env []string, console io.Writer) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, enclave.VCPUCPUsEnv+"=") {
			return env
		}
	}
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		fmt.Fprintf(console, "nested: sched_getaffinity: %v (guests may run on CPU 0)\n", err)
		return env
	}
	set, ok := commandCPUs(online)
	if !ok {
		return env
	}
	list := vmm.CPUList(set)
	fmt.Fprintf(console, "nested: the command runs on all %d of L1's CPUs, its vCPU threads on %s only, not on CPU 0 (QEMU's IGNNE race, see docs/nested.md)\n", online.Count(), list)
	return append(env, enclave.VCPUCPUsEnv+"="+list)
}

// startCommand starts cmd; with avoidCPU0 it starts it with the affinity
// commandCPUs gives (inherited by everything the command starts), from a
// locked thread whose own affinity is restored afterwards.
func startCommand(cmd *exec.Cmd, avoidCPU0 bool, console io.Writer) error {
	if !avoidCPU0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		fmt.Fprintf(console, "nested: sched_getaffinity: %v (the command may run on CPU 0)\n", err)
		return cmd.Start()
	}
	set, ok := commandCPUs(online)
	if !ok {
		return cmd.Start()
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintf(console, "nested: sched_setaffinity: %v (the command may run on CPU 0)\n", err)
		return cmd.Start()
	}
	defer unix.SchedSetaffinity(0, &online)
	fmt.Fprintf(console, "nested: the command runs on %d of L1's %d CPUs, not on CPU 0 (QEMU's IGNNE race, see docs/nested.md)\n", set.Count(), online.Count())
	return cmd.Start()
}

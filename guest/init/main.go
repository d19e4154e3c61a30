// Command init is the enclave /init that nitrovm puts in the boot ramdisk of
// the EIFs it builds. It does what AWS's init does
// (aws-nitro-enclaves-sdk-bootstrap, init/init.c):
//
//  1. mounts devtmpfs on /dev and takes /dev/console as stdin/out/err;
//  2. loads /nsm.ko when the boot ramdisk has one (AWS kernels);
//  3. tells the parent the enclave is up: connects to vsock CID 3 port 9000,
//     sends 0xB7 and expects 0xB7 back (no answer: init exits and the kernel
//     panics, as on Nitro);
//  4. reads /cmd and /env (one entry per line) from the user ramdisk;
//  5. makes /rootfs the root (bind, move onto /, chroot) and mounts /dev,
//     /proc, /sys, /run, /tmp, /dev/shm, /dev/pts and cgroups inside it;
//  6. starts the command in a new session and, as PID 1, reaps every child
//     until the command exits; then it reboots, which ends the enclave.
//
// It prints one line when it starts the command, and errors. Build it static:
// CGO_ENABLED=0 go build -trimpath -ldflags=-s\ -w ./guest/init.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Heartbeat protocol, from init.c (VSOCK_CID, VSOCK_PORT, HEART_BEAT).
const (
	heartbeatCID  = 3    // the parent instance
	heartbeatPort = 9000 // nitro-cli's enclave-ready listener
	heartbeatByte = 0xB7 // sent and expected back
)

// Files of the ramdisks.
const (
	nsmModulePath = "/nsm.ko"
	cmdPath       = "/cmd"
	envFilePath   = "/env"
	rootfsPath    = "/rootfs"
)

// mount is one mount(2) call of the container setup.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	required               bool // failure is fatal, as in AWS's init
}

// rootMounts are the mounts inside /rootfs after the switch, in order (the
// ops table of init.c).
var rootMounts = [...]mount{
	{"proc", "/proc", "proc", unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, "", true},
	{"tmpfs", "/run", "tmpfs", unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755", false},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, "", false},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, "", false},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "", false},
	{"sysfs", "/sys", "sysfs", unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, "", false},
	{"cgroup_root", "/sys/fs/cgroup", "tmpfs", unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755", false},
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "init: must run as PID 1 inside an enclave")
		os.Exit(2)
	}
	// As PID 1, a signal with the default action would kill the enclave.
	// Catch (not ignore: ignored signals stay ignored across exec) the
	// usual ones and drop them.
	signal.Notify(make(chan os.Signal, 1), unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "init: %v\n", err)
		os.Exit(1) // the kernel panics (and reboots after panic=N seconds)
	}
}

func run() error {
	if err := mountDev(); err != nil {
		return err
	}
	if err := openConsole(); err != nil {
		warn("console: %v", err)
	}
	if err := loadNSM(); err != nil {
		return err
	}
	if err := heartbeat(); err != nil {
		return fmt.Errorf("heartbeat to vsock %d:%d: %w", heartbeatCID, heartbeatPort, err)
	}
	env, errEnv := readFile(envFilePath)
	if errEnv != nil {
		warn("could not read %s: %v", envFilePath, errEnv)
	}
	cmd, errCmd := readFile(cmdPath)
	if errCmd != nil {
		warn("could not read %s: %v", cmdPath, errCmd)
	}
	if err := switchRoot(); err != nil {
		return err
	}
	if err := mountDev(); err != nil {
		return err
	}
	if err := setupRoot(); err != nil {
		return err
	}
	if errEnv != nil || env == nil {
		env = []string{"PATH=" + defaultPath}
	}
	if errCmd != nil || len(cmd) == 0 {
		cmd = []string{"sh"}
	}
	pid, err := launch(cmd, env)
	if err != nil {
		return err
	}
	status := reap(pid)
	if status != 0 {
		warn("%s exited with status %d", cmd[0], status)
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

func warn(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "init: "+format+"\n", args...)
}

// mountDev mounts devtmpfs on /dev; an already mounted /dev (EBUSY, as with
// CONFIG_DEVTMPFS_MOUNT) is fine.
func mountDev() error {
	err := unix.Mount("dev", "/dev", "devtmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount devtmpfs on /dev: %w", err)
	}
	return nil
}

// openConsole makes /dev/console the standard streams.
func openConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	for _, std := range []int{0, 1, 2} {
		if err := unix.Dup3(fd, std, 0); err != nil {
			return fmt.Errorf("dup /dev/console: %w", err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

// loadNSM inserts /nsm.ko when present and removes the file.
func loadNSM() error {
	f, err := os.Open(nsmModulePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", nsmModulePath, err)
	}
	err = unix.FinitModule(int(f.Fd()), "", 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("insert %s: %w", nsmModulePath, err)
	}
	if err := os.Remove(nsmModulePath); err != nil {
		warn("could not unlink %s: %v", nsmModulePath, err)
	}
	return nil
}

// heartbeat tells the parent the enclave booted.
func heartbeat() error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: heartbeatCID, Port: heartbeatPort}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	buf := []byte{heartbeatByte}
	if n, err := unix.Write(fd, buf); err != nil || n != 1 {
		return fmt.Errorf("write: %d bytes, %v", n, err)
	}
	buf[0] = 0
	n, err := unix.Read(fd, buf)
	if err != nil || n != 1 {
		return fmt.Errorf("read: %d bytes, %v", n, err)
	}
	if buf[0] != heartbeatByte {
		return fmt.Errorf("got %#x, want %#x", buf[0], heartbeatByte)
	}
	return nil
}

// readFile reads a cmd/env file and removes it.
func readFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	lines, err := readLines(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	os.Remove(name)
	return lines, nil
}

// switchRoot makes /rootfs the root directory: it turns /rootfs into a mount
// point, moves it onto / and chroots into it (init.c does the same; the
// initramfs cannot be pivot_root'ed away).
func switchRoot() error {
	if err := unix.Mount(rootfsPath, rootfsPath, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s: %w", rootfsPath, err)
	}
	if err := unix.Chdir(rootfsPath); err != nil {
		return fmt.Errorf("chdir %s: %w", rootfsPath, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", rootfsPath, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// setupRoot creates the /dev symlinks and the mounts of the container
// root, then one cgroup v1 hierarchy per enabled controller. Only /proc is
// required; the rest may be missing from a small kernel and only warns.
func setupRoot() error {
	for _, l := range [][2]string{
		{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			warn("symlink %s: %v", l[1], err)
		}
	}
	for _, m := range rootMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			warn("mkdir %s: %v", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			if m.required {
				return fmt.Errorf("mount %s: %w", m.target, err)
			}
			warn("mount %s: %v", m.target, err)
		}
	}
	mountCgroups()
	return nil
}

// mountCgroups mounts each enabled controller of /proc/cgroups on
// /sys/fs/cgroup/<name>, as init.c's init_cgroups does.
func mountCgroups() {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return // kernel without cgroups
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) != 4 || f[3] != "1" {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup", filepath.Base(f[0]))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			warn("mkdir %s: %v", dir, err)
			continue
		}
		if err := unix.Mount(f[0], dir, "cgroup", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, f[0]); err != nil {
			warn("mount %s: %v", dir, err)
		}
	}
}

// launch starts the command in a new session, with env as its whole
// environment.
func launch(cmd, env []string) (int, error) {
	exe, err := lookPath(cmd[0], env, isExecutable)
	if err != nil {
		return 0, fmt.Errorf("start command: %w", err)
	}
	fmt.Fprintf(os.Stderr, "init: starting %s\n", strings.Join(cmd, " "))
	pid, err := syscall.ForkExec(exe, cmd, &syscall.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	return pid, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// reap waits for every child (orphans are re-parented to PID 1) until pid
// exits, and returns its exit status (128+signal when killed).
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			warn("wait: %v", err)
			return 1
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

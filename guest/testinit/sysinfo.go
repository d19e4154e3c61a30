package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysinfo prints what the guest sees of its machine:
//
//	NITROVM-TEST cpus=2
//	NITROVM-TEST mem_kib=480436
//	NITROVM-TEST kernel=6.12.117
//	NITROVM-TEST cmdline=reboot=k panic=30 ...
//	NITROVM-TEST uptime=0.87
//	NITROVM-TEST virtio=virtio0:19,virtio1:33   (device:virtio device ID, decimal)
//	NITROVM-TEST virtio_via=virtio0:LNRO0005:00,virtio1:LNRO0005:01
//	NITROVM-TEST dev_nsm=yes|no
//	NITROVM-TEST dev_vsock=yes|no
//	NITROVM-TEST apic=cluster x2apic   (the kernel's APIC driver; empty: xAPIC flat)
//	NITROVM-TEST hwvirt=vmx|svm   (hardware virtualization the CPUs offer; empty in an enclave)
//	NITROVM-TEST missing=aio,ns/user   (features of AWS's kernel this one lacks, features.go)
func sysinfo(r *report) error {
	r.kv("cpus", "%d", runtime.NumCPU())
	mem, err := memTotalKiB()
	if err != nil {
		return err
	}
	r.kv("mem_kib", "%d", mem)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	r.kv("kernel", "%s", unix.ByteSliceToString(uts.Release[:]))
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read cmdline: %w", err)
	}
	r.kv("cmdline", "%s", strings.TrimSpace(string(cmdline)))
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		r.kv("uptime", "%s", strings.Fields(string(up))[0])
	}
	devs, err := virtioDevices("/sys/bus/virtio/devices")
	if err != nil {
		return err
	}
	r.kv("virtio", "%s", strings.Join(devs, ","))
	via, err := virtioTransports("/sys/bus/virtio/devices")
	if err != nil {
		return err
	}
	r.kv("virtio_via", "%s", strings.Join(via, ","))
	r.kv("dev_nsm", "%s", yesNo(exists("/dev/nsm")))
	r.kv("dev_vsock", "%s", yesNo(exists("/dev/vsock")))
	// A raw descriptor: os.File would wait in the poller where the log
	// ends instead of returning EAGAIN.
	kmsg, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open kernel log: %w", err)
	}
	defer unix.Close(kmsg)
	apic, err := apicDriver(fdReader(kmsg))
	if err != nil {
		return err
	}
	r.kv("apic", "%s", apic)
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return fmt.Errorf("read cpuinfo: %w", err)
	}
	r.kv("hwvirt", "%s", strings.Join(hwVirt(string(cpuinfo)), ","))
	r.kv("missing", "%s", strings.Join(missingFeatures(appFeatures()), ","))
	return nil
}

// hwVirt returns which of the flags "vmx" and "svm" (hardware
// virtualization) the first CPU of a /proc/cpuinfo listing has.
func hwVirt(cpuinfo string) []string {
	var found []string
	for _, l := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				found = append(found, f)
			}
		}
		break
	}
	return found
}

// fdReader reads a raw file descriptor with read(2).
type fdReader int

func (fd fdReader) Read(p []byte) (int, error) {
	n, err := unix.Read(int(fd), p)
	return max(n, 0), err
}

// apicRouting precedes the APIC driver's name in the kernel's log when it
// replaces the default (xAPIC flat) one: apic_install_driver in Linux's
// arch/x86/kernel/apic/init.c.
const apicRouting = "APIC: Switched APIC routing to: "

// apicDriver returns the APIC driver the kernel last switched to, from
// kernel log records read from kmsg (/dev/kmsg, opened non-blocking: one
// record "prio,seq,usec,flags;text" per read, EAGAIN after the last), or
// "" if it kept the default one.
func apicDriver(kmsg io.Reader) (string, error) {
	buf := make([]byte, 8192)
	driver := ""
	for {
		n, err := kmsg.Read(buf)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, io.EOF):
			return driver, nil
		case errors.Is(err, unix.EPIPE):
			continue // records were overwritten since the last read
		case err != nil:
			return "", fmt.Errorf("read kernel log: %w", err)
		}
		_, text, _ := strings.Cut(string(buf[:n]), ";")
		text, _, _ = strings.Cut(text, "\n")
		if name, ok := strings.CutPrefix(text, apicRouting); ok {
			driver = name
		}
	}
}

// memTotalKiB returns MemTotal from /proc/meminfo.
func memTotalKiB() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("open meminfo: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kib int64
		if _, err := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kib); err == nil {
			return kib, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// virtioDevices lists the virtio devices under dir as "name:id" with the
// decimal virtio device ID, sorted by name. A missing dir is no devices.
func virtioDevices(dir string) ([]string, error) {
	return listVirtio(dir, func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name, "device"))
		if err != nil {
			return "", err
		}
		var id int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "0x%x", &id); err != nil {
			return "", fmt.Errorf("id %q: %w", b, err)
		}
		return strconv.Itoa(id), nil
	})
}

// virtioTransports lists the virtio devices under dir as "name:parent",
// where parent is the platform device the virtio-mmio driver bound:
// "LNRO0005:NN" when the kernel found it in the ACPI DSDT, "virtio-mmio.N"
// when it came from a virtio_mmio.device= command-line entry. Sorted by
// name; a missing dir is no devices.
func virtioTransports(dir string) ([]string, error) {
	return listVirtio(dir, func(name string) (string, error) {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		return filepath.Base(filepath.Dir(p)), nil
	})
}

// listVirtio returns "name:detail" for each entry of dir, sorted, where
// detail is what describe says of that device. A missing dir is no
// devices.
func listVirtio(dir string, describe func(name string) (string, error)) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list virtio devices: %w", err)
	}
	var out []string
	for _, e := range entries {
		d, err := describe(e.Name())
		if err != nil {
			return nil, fmt.Errorf("virtio device %s: %w", e.Name(), err)
		}
		out = append(out, e.Name()+":"+d)
	}
	sort.Strings(out)
	return out, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTestNames(t *testing.T) {
	tests := []struct {
		cmdline string
		want    []string
	}{
		{"console=ttyS0 reboot=k", []string{"sysinfo"}},
		{"console=ttyS0 nitrovm.test=sysinfo,panic\n", []string{"sysinfo", "panic"}},
		{"nitrovm.test=nsm nitrovm.test=vsock-echo,", []string{"nsm", "vsock-echo"}},
		{"xnitrovm.test=nsm", []string{"sysinfo"}},
	}
	for _, tt := range tests {
		if got := testNames(tt.cmdline); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("testNames(%q): got %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}

func TestVirtioDevices(t *testing.T) {
	dir := t.TempDir()
	for name, id := range map[string]string{"virtio1": "0x0021\n", "virtio0": "0x0013\n"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "device"), []byte(id), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir  string
		want []string
	}{
		{dir, []string{"virtio0:19", "virtio1:33"}},
		{filepath.Join(dir, "missing"), nil},
	}
	for _, tt := range tests {
		got, err := virtioDevices(tt.dir)
		if err != nil {
			t.Fatalf("virtioDevices(%s): %v", tt.dir, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("virtioDevices(%s): got %v, want %v", tt.dir, got, tt.want)
		}
	}
}

func TestVirtioTransports(t *testing.T) {
	root := t.TempDir()
	bus := filepath.Join(root, "bus")
	for name, parent := range map[string]string{"virtio1": "virtio-mmio.0", "virtio0": "LNRO0005:00"} {
		dev := filepath.Join(root, "devices", "platform", parent, name)
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(bus, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "devices", "platform", parent, name), filepath.Join(bus, name)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := virtioTransports(bus)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio0:LNRO0005:00", "virtio1:virtio-mmio.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := virtioTransports(filepath.Join(root, "missing")); err != nil || got != nil {
		t.Errorf("missing dir: got %v, %v; want nil, nil", got, err)
	}
}

func TestLoadModulesErrors(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list")
	if err := os.WriteFile(list, []byte(filepath.Join(dir, "missing.ko.xz")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, list string
		wantErr    bool
	}{
		{"no list", filepath.Join(dir, "nolist"), false},
		{"missing module", list, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			err := loadModules(&report{w: &out}, tt.list)
			if (err != nil) != tt.wantErr {
				t.Errorf("got %v, want error %v", err, tt.wantErr)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q, want nothing", out.String())
			}
		})
	}
}

// kmsgReader returns one record per Read as /dev/kmsg does, then each of
// errs in turn, then EAGAIN.
type kmsgReader struct {
	records []string
	errs    []error
}

func (k *kmsgReader) Read(p []byte) (int, error) {
	if len(k.records) > 0 {
		r := k.records[0]
		k.records = k.records[1:]
		if r == "" { // stands for an overwritten record
			return 0, unix.EPIPE
		}
		return copy(p, r), nil
	}
	if len(k.errs) > 0 {
		err := k.errs[0]
		k.errs = k.errs[1:]
		return 0, err
	}
	return 0, unix.EAGAIN
}

func TestAPICDriver(t *testing.T) {
	rec := func(text string) string { return "6,120,52000,-;" + text + "\n" }
	for _, c := range []struct {
		name    string
		records []string
		errs    []error
		want    string
		wantErr string // the error's message; "" for none
	}{
		{"default", []string{rec("Linux version 6.12"), rec("APIC: Switch to symmetric I/O mode setup")}, nil, "", ""},
		{"x2apic", []string{rec("x2apic enabled"), rec("APIC: Switched APIC routing to: cluster x2apic")}, nil, "cluster x2apic", ""},
		{"last switch wins", []string{rec("APIC: Switched APIC routing to: physical flat"), rec("APIC: Switched APIC routing to: physical x2apic")}, nil, "physical x2apic", ""},
		{"continuation lines ignored", []string{"6,121,52001,-;APIC: Switched APIC routing to: cluster x2apic\n SUBSYSTEM=cpu\n"}, nil, "cluster x2apic", ""},
		{"overwritten records skipped", []string{"", rec("APIC: Switched APIC routing to: cluster x2apic")}, nil, "cluster x2apic", ""},
		{"end of file", []string{rec("APIC: Switched APIC routing to: cluster x2apic")}, []error{io.EOF}, "cluster x2apic", ""},
		{"read error", []string{rec("APIC: Switched APIC routing to: cluster x2apic")}, []error{unix.EIO}, "", "read kernel log: input/output error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := apicDriver(&kmsgReader{records: c.records, errs: c.errs})
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if msg != c.wantErr || got != c.want {
				t.Errorf("apicDriver: got %q, error %q; want %q, error %q", got, msg, c.want, c.wantErr)
			}
		})
	}
}

func TestSerialIRQ(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"ioapic", "           CPU0       CPU1\n  9:          0          0  IO-APIC    9-fasteoi   acpi\n 24:        912         40  IO-APIC    4-edge      ttyS0\nNMI:          0          0   Non-maskable interrupts\n", "24", false},
		{"older kernel", " 4:        12  IO-APIC   4-edge      serial\n", "4", false},
		{"none", "           CPU0\n  1:          9   IO-APIC   1-edge      i8042\n", "", true},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		got, err := serialIRQ(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: got %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHWVirt(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"amd", "processor\t: 0\nflags\t\t: fpu sse3 svm lm\n\nprocessor\t: 1\nflags\t\t: fpu vmx\n", []string{"svm"}},
		{"intel", "flags\t\t: fpu vmx ept\nvmx flags\t: ept\n", []string{"vmx"}},
		{"none", "flags\t\t: fpu hypervisor\n", nil},
		{"no flags", "processor\t: 0\n", nil},
	}
	for _, tt := range tests {
		if got := hwVirt(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

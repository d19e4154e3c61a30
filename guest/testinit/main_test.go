package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
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

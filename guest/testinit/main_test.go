package main

import (
	"os"
	"path/filepath"
	"reflect"
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

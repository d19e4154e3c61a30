package nested

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/nitrovm/nitrovm/internal/nested/l1init"
)

func TestWriteCPIO(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "tool")
	if err := os.WriteFile(host, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := WriteCPIO(&buf, []Entry{
		{Name: "/etc/conf.json", Data: []byte("{}")},
		{Name: "/bin/tool", HostPath: host},
		{Name: "/bin/sh", Linkname: "tool"},
		{Name: "/tmp", Dir: true, Mode: 0o1777},
	})
	if err != nil {
		t.Fatalf("WriteCPIO: %v", err)
	}
	if got := string(buf.Bytes()[:6]); got != "070701" {
		t.Fatalf("magic: got %q, want newc 070701", got)
	}
	type file struct {
		mode cpio.FileMode
		data string
	}
	got := map[string]file{}
	var order []string
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		b, _ := io.ReadAll(r)
		if h.Mode&cpio.TypeSymlink == cpio.TypeSymlink {
			b = []byte(h.Linkname)
		}
		got[h.Name] = file{h.Mode, string(b)}
		order = append(order, h.Name)
	}
	want := map[string]file{
		"bin":           {cpio.TypeDir | 0o755, ""},
		"bin/sh":        {cpio.TypeSymlink | 0o777, "tool"},
		"bin/tool":      {cpio.TypeReg | 0o755, "#!/bin/sh\n"},
		"etc":           {cpio.TypeDir | 0o755, ""},
		"etc/conf.json": {cpio.TypeReg | 0o644, "{}"},
		"tmp":           {cpio.TypeDir | 0o777, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("archive: got %v, want %v", got, want)
	}
	if order[0] != "bin" {
		t.Errorf("parent directory must come first: got order %v", order)
	}
}

func TestWriteCPIOErrors(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
	}{
		{"empty entry", Entry{Name: "/x"}},
		{"missing host file", Entry{Name: "/x", HostPath: "/nonexistent/file"}},
		{"host directory", Entry{Name: "/x", HostPath: os.TempDir()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := WriteCPIO(io.Discard, []Entry{tt.entry}); err == nil {
				t.Errorf("got nil error, want one")
			}
		})
	}
}

func TestModuleOrder(t *testing.T) {
	dir := t.TempDir()
	dep := `kernel/arch/x86/kvm/kvm.ko.xz: kernel/virt/lib/irqbypass.ko.xz
kernel/arch/x86/kvm/kvm-amd.ko.xz: kernel/arch/x86/kvm/kvm.ko.xz kernel/virt/lib/irqbypass.ko.xz
kernel/virt/lib/irqbypass.ko.xz:
kernel/net/vmw_vsock/vsock.ko.xz:
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz: kernel/net/vmw_vsock/vsock.ko.xz
kernel/net/vmw_vsock/vsock_loopback.ko.xz: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz kernel/net/vmw_vsock/vsock.ko.xz
`
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mods    []string
		want    []string
		wantErr bool
	}{
		{"kvm-amd", []string{"kvm-amd"}, []string{
			"kernel/virt/lib/irqbypass.ko.xz", "kernel/arch/x86/kvm/kvm.ko.xz", "kernel/arch/x86/kvm/kvm-amd.ko.xz"}, false},
		{"shared deps once", []string{"kvm_amd", "vsock_loopback", "kvm"}, []string{
			"kernel/virt/lib/irqbypass.ko.xz", "kernel/arch/x86/kvm/kvm.ko.xz", "kernel/arch/x86/kvm/kvm-amd.ko.xz",
			"kernel/net/vmw_vsock/vsock.ko.xz", "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz",
			"kernel/net/vmw_vsock/vsock_loopback.ko.xz"}, false},
		{"unknown", []string{"nope"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := moduleOrder(dir, tt.mods)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		out       string
		want      int
		wantFound bool
	}{
		{"boot\nNITROVM-NESTED-EXIT 0\nreboot\n", 0, true},
		{"NITROVM-NESTED-EXIT 3\r\n", 3, true},
		{"echo NITROVM-NESTED-EXIT 9\nNITROVM-NESTED-EXIT 1\n", 1, true},
		{"NITROVM-NESTED-EXIT x\n", 0, false},
		{"no marker\n", 0, false},
	}
	for _, tt := range tests {
		got, found := exitStatus(tt.out)
		if got != tt.want || found != tt.wantFound {
			t.Errorf("exitStatus(%q): got %d, %v, want %d, %v", tt.out, got, found, tt.want, tt.wantFound)
		}
	}
}

func TestConsoleStripsCR(t *testing.T) {
	var live bytes.Buffer
	c := &console{out: &live}
	for _, p := range []string{"abc\r\n", "nested: L1 re", "ady (uptime 1 s)\r\n"} {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := c.text(), "abc\nnested: L1 ready (uptime 1 s)\n"; got != want {
		t.Errorf("text: got %q, want %q", got, want)
	}
	if live.String() != c.text() {
		t.Errorf("live output: got %q, want %q", live.String(), c.text())
	}
	if c.readyAt().IsZero() {
		t.Errorf("ready line split across writes not seen")
	}
}

func TestDefaultCacheDir(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"NITROVM_CACHE": "/c", "HOME": "/h"}, "/c"},
		{map[string]string{"HOME": "/h"}, "/h/.cache/nitrovm"},
	}
	for _, tt := range tests {
		if got := DefaultCacheDir(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestNestedValidateEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantErr string // substring; "" means no error
	}{
		{"none", nil, ""},
		{"plain", []string{"A=1", "B_2=x y"}, ""},
		{"empty value", []string{"A="}, ""},
		{"equals in value", []string{"A=b=c"}, ""},
		{"no equals", []string{"A"}, `"A": want K=V`},
		{"empty name", []string{"=v"}, `"=v": empty name`},
		{"newline in value", []string{"A=1\n2"}, `"A=1\n2": contains NUL or newline`},
		{"newline in name", []string{"A\nB=1"}, `"A\nB=1": contains NUL or newline`},
		{"NUL in value", []string{"A=\x00"}, `"A=\x00": contains NUL or newline`},
		{"second bad", []string{"A=1", "=2"}, `"=2": empty name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEnv(tt.env)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(got, "\n") {
				t.Errorf("got multi-line error %q, want one line", got)
			}
		})
	}
}

func TestNestedRunRejectsBadEnv(t *testing.T) {
	_, err := Run(context.Background(), Options{Nitrovm: "/bin/sh", Command: []string{"true"}, Env: []string{"=x"}})
	if err == nil || !strings.Contains(err.Error(), `"=x"`) {
		t.Errorf("got %v, want an error naming \"=x\"", err)
	}
}

func TestNestedInitramfsCarriesEnv(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nitrovm")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "initrd")
	o := Options{Nitrovm: bin, ModulesDir: dir, Modules: []string{}, Command: []string{"env"}, Env: []string{"A=1", "B=x=y"}}
	if err := buildInitramfs(dst, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := `"env":["A=1","B=x=y"]`
	if got := string(b); !strings.Contains(got, want) {
		t.Errorf("got initramfs without %s, want it in %s", want, l1init.ConfigPath)
	}
}

package l1init

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// traceHeader is the comment block tracefs puts before the events.
const traceHeader = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 1/1   #P:2\n#\n"

// shutdownEvent is a SHUTDOWN exit as L1's tracefs printed it (a guest
// rebooting with reboot=t).
const shutdownEvent = "         nitrovm-157     [000] d..1.    12.349218: kvm_exit: vcpu 0 reason shutdown rip 0xffffffff8102b3d3 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x80000403 error_code 0x00000000"

// cr3Event is the CR3 probe's line recorded with shutdownEvent.
const cr3Event = "         nitrovm-157     [000] ...1.    12.349300: shutdown_cr3: (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x4a4000 pages=32768 id=0"

const modulesList = "kvm_amd 147456 3 - Live 0xffffffffc0389000\nkvm 1372160 1 kvm_amd, Live 0xffffffffc0236000\n"

func TestWriteEvidence(t *testing.T) {
	tests := []struct {
		name   string
		trace  string
		failed bool
		want   string
	}{
		{"failed", traceHeader + shutdownEvent + "\n", true,
			ShutdownMarker + " nitrovm-157     [000] d..1.    12.349218: kvm_exit: vcpu 0 reason shutdown rip 0xffffffff8102b3d3 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x80000403 error_code 0x00000000\n" +
				ModuleMarker + " kvm_amd 147456 3 - Live 0xffffffffc0389000\n" +
				ModuleMarker + " kvm 1372160 1 kvm_amd, Live 0xffffffffc0236000\n"},
		{"failed, with the CR3 probe", traceHeader + shutdownEvent + "\n" + cr3Event + "\n", true,
			ShutdownMarker + " nitrovm-157     [000] d..1.    12.349218: kvm_exit: vcpu 0 reason shutdown rip 0xffffffff8102b3d3 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x80000403 error_code 0x00000000\n" +
				ShutdownMarker + " nitrovm-157     [000] ...1.    12.349300: shutdown_cr3: (shutdown_interception+0x4/0x50 [kvm_amd]) cr3=0x4a4000 pages=32768 id=0\n" +
				ModuleMarker + " kvm_amd 147456 3 - Live 0xffffffffc0389000\n" +
				ModuleMarker + " kvm 1372160 1 kvm_amd, Live 0xffffffffc0236000\n"},
		{"failed, nothing recorded", traceHeader, true,
			ModuleMarker + " kvm_amd 147456 3 - Live 0xffffffffc0389000\n" +
				ModuleMarker + " kvm 1372160 1 kvm_amd, Live 0xffffffffc0236000\n"},
		{"passed", traceHeader + shutdownEvent + "\n", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			trace, modules := filepath.Join(dir, "trace"), filepath.Join(dir, "modules")
			if err := os.WriteFile(trace, []byte(tt.trace), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(modules, []byte(modulesList), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			writeEvidence(&out, dir, modules, tt.failed)
			if out.String() != tt.want {
				t.Errorf("got\n%q\nwant\n%q", out.String(), tt.want)
			}
			if b, err := os.ReadFile(trace); err != nil || len(b) != 0 {
				t.Errorf("trace buffer after: %q, %v; want it cleared", b, err)
			}
		})
	}
}

// TestWriteEvidenceNoTrace: without a trace buffer (tracing not set up)
// nothing is printed, not even the modules.
func TestWriteEvidenceNoTrace(t *testing.T) {
	dir := t.TempDir()
	modules := filepath.Join(dir, "modules")
	if err := os.WriteFile(modules, []byte(modulesList), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeEvidence(&out, dir, modules, true)
	if out.Len() != 0 {
		t.Errorf("got %q, want nothing", out.String())
	}
}

//go:build nested

package vmm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/nested"
)

// awsCmdline is AWS's enclave kernel command line.
const awsCmdline = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"

// TestNestedBoot boots the guest kernel with guest/testinit under
// "nitrovm boot" inside the nested L1 (go test -tags nested ./internal/vmm):
// the guest must see the CPUs and memory asked for, its reboot must end
// nitrovm with status 0, and its panic with status 3 and the panic line.
// It then runs this package's kvm-tagged guest tests in L1, which boot the same
// kernel with virtio devices (two inert ones; a real vsock doing the Nitro
// heartbeat).
func TestNestedBoot(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", filepath.Join(root, "scripts/kernel/build-guest.sh")).Output()
	if err != nil {
		t.Skipf("no guest kernel (scripts/kernel/build-guest.sh): %v", err)
	}
	kernel := strings.TrimSpace(string(out))
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "nitrovm")
	initBin := filepath.Join(tmp, "init")
	for _, b := range [][]string{{bin, "./cmd/nitrovm"}, {initBin, "./guest/testinit"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", b[0], b[1])
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	vmmTest := filepath.Join(tmp, "vmm.test")
	cmd := exec.Command("go", "test", "-c", "-tags", "kvm", "-o", vmmTest, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	initrd := filepath.Join(tmp, "initrd")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	err = nested.WriteCPIO(f, []nested.Entry{
		{Name: "/init", HostPath: initBin, Mode: 0o755},
		{Name: "/dev", Dir: true}, {Name: "/proc", Dir: true}, {Name: "/sys", Dir: true},
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// Each step streams its output prefixed with its name, ending with its
	// exit status ("C1 RC=0"); "timeout" bounds a hung guest.
	boot := "timeout 300 env NITROVM_LOG=debug nitrovm boot --kernel /g/bzImage --initrd /g/initrd "
	step := func(name, cmd string) string {
		return "{ " + cmd + "; echo RC=$?; } 2>&1 | sed 's/^/" + name + " /'"
	}
	script := strings.Join([]string{
		step("C1", boot+"--memory 512 --cpu-count 2 --cmdline '"+awsCmdline+" nitrovm.test=sysinfo'"),
		step("C2", boot+"--memory 1024 --cpu-count 4 --cmdline '"+awsCmdline+" nitrovm.test=sysinfo'"),
		step("C3", boot+"--memory 256 --cpu-count 1 --cmdline '"+awsCmdline+" nitrovm.test=panic'"),
		// TestRun (many short-lived VMs) stays out: creating VMs in quick
		// succession sometimes oopses L1 ("int3" in __schedule) under
		// QEMU's multi-threaded TCG; it runs on the local KVM instead.
		step("C4", "NITROVM_TEST_KERNEL=/g/bzImage NITROVM_TEST_INITRD=/g/initrd timeout 400 /g/vmm.test -test.run 'TestGuestVirtio|TestGuestVsock' -test.v"),
	}, "; ")
	// Below go test's default 10-minute limit, so that a hung L1 is killed
	// and its console shown instead of the test binary dying.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var live bytes.Buffer
	res, err := nested.Run(ctx, nested.Options{
		Output:  &live,
		Nitrovm: bin,
		Files:   map[string]string{"/g/bzImage": kernel, "/g/initrd": initrd, "/g/vmm.test": vmmTest},
		Command: []string{"sh", "-c", script},
	})
	if err != nil {
		t.Fatalf("%v\nL1 console:\n%s", err, live.String())
	}
	o := res.Output
	for _, want := range []string{
		"C1 RC=0", "C1 NITROVM-TEST cpus=2", "C1 NITROVM-TEST check=sysinfo result=ok",
		"C2 RC=0", "C2 NITROVM-TEST cpus=4", "C2 NITROVM-TEST check=sysinfo result=ok",
		"C3 RC=3", "C3 nitrovm: guest panic: Kernel panic - not syncing: Attempted to kill init!",
		"C4 RC=0", "C4 --- PASS: TestGuestVirtio", "C4 --- PASS: TestGuestVsockHeartbeat",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("nested output lacks %q", want)
		}
	}
	for i, r := range []struct{ lo, hi int }{{490000, 524288}, {1000000, 1048576}} {
		m := regexp.MustCompile(`C` + string(rune('1'+i)) + ` NITROVM-TEST mem_kib=(\d+)`).FindStringSubmatch(o)
		if m == nil {
			t.Errorf("C%d: no mem_kib line", i+1)
			continue
		}
		var kib int
		for _, c := range m[1] {
			kib = kib*10 + int(c-'0')
		}
		if kib < r.lo || kib > r.hi {
			t.Errorf("C%d mem_kib: got %d, want %d..%d", i+1, kib, r.lo, r.hi)
		}
	}
	for _, m := range regexp.MustCompile(`C\d .*(NITROVM-TEST uptime=\S+|vmm_rss_kib_excluding_guest_ram=\d+|virtio.mmio.*|unhandled.*)`).FindAllStringSubmatch(o, -1) {
		t.Log(m[0])
	}
	if t.Failed() {
		t.Logf("nested output:\n%s", o)
	}
}

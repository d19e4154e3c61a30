// Package enclavetest provides test doubles for package enclave: a fake
// Launcher whose guest behaviour is scripted by the EIF's kernel command
// line, a helper that writes small real EIFs, and a TestMain hook that lets
// a test binary act as a detached supervisor.
//
// Command-line words the fake understands (anything else is ignored):
//
//	fake.boot=DUR         time until the heartbeat (default 20ms)
//	fake.heartbeat=never  never send the heartbeat
//	fake.panic            exit before the heartbeat with a kernel panic
//	fake.exit=DUR         exit DUR after the heartbeat ("guest powered off")
//	fake.console=TEXT     print TEXT (with "_" as space) on the console
package enclavetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/enclave"
	"github.com/nitrovm/nitrovm/internal/vmm"
)

// Launcher is a fake enclave.Launcher: it measures the EIF for real but
// runs no VM.
type Launcher struct{}

// Launch implements enclave.Launcher.Launch.
func (Launcher) Launch(ctx context.Context, spec enclave.Spec) (enclave.Instance, error) {
	f, err := eif.Open(spec.EIFPath)
	if err != nil {
		return nil, fmt.Errorf("open EIF: %w", err)
	}
	defer f.Close()
	m, err := f.Measure()
	if err != nil {
		return nil, fmt.Errorf("measure EIF: %w", err)
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	cmdline, err := f.Cmdline()
	if err != nil {
		return nil, err
	}
	// Contain the fake supervisor as the real one is, so that the
	// lifecycle tests run their supervisors jailed.
	if spec.Contain != nil {
		if err := spec.Contain(nil); err != nil {
			return nil, fmt.Errorf("contain: %w", err)
		}
	}
	logger := spec.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	in := &instance{
		meas:   mj,
		logger: logger,
		vcpus:  len(spec.CPUIDs),
		hb:     make(chan struct{}),
		done:   make(chan struct{}),
		stop:   make(chan struct{}),
	}
	go in.run(ctx, cmdline, spec.Console)
	return in, nil
}

type instance struct {
	meas     json.RawMessage
	hb, done chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	result   string
	logger   *slog.Logger
	vcpus    int
}

// Measurements implements enclave.Instance.Measurements.
func (in *instance) Measurements() json.RawMessage { return in.meas }

// Heartbeat implements enclave.Instance.Heartbeat.
func (in *instance) Heartbeat() <-chan struct{} { return in.hb }

// Done implements enclave.Instance.Done.
func (in *instance) Done() <-chan struct{} { return in.done }

// Result implements enclave.Instance.Result.
func (in *instance) Result() string { return in.result }

// fakeExits is how many "last exits" lines Dump writes per vCPU: a real
// dump has up to 32 (vmm's exit ring), so that a reader that shows only a
// log's last lines loses the first vCPU's registers.
const fakeExits = 16

// Dump writes a state dump to the enclave's log as a real VM's Dump does
// (between records with msg vmm.DumpBeginsMsg and vmm.DumpEndsMsg, one
// "vm state" record per line): per vCPU, "vcpu N fake: no registers" and
// fakeExits lines "vcpu N   fake exit K".
func (in *instance) Dump(cause string) {
	in.logger.Warn(vmm.DumpBeginsMsg, "cause", cause, "vcpus", in.vcpus)
	for i := range in.vcpus {
		in.logger.Warn("vm state", "text", fmt.Sprintf("vcpu %d fake: no registers", i))
		for k := range fakeExits {
			in.logger.Warn("vm state", "text", fmt.Sprintf("vcpu %d   fake exit %d", i, k))
		}
	}
	in.logger.Warn(vmm.DumpEndsMsg, "cause", cause)
}

// Stop implements enclave.Instance.Stop.
func (in *instance) Stop() { in.stopOnce.Do(func() { close(in.stop) }) }

func (in *instance) run(ctx context.Context, cmdline string, console io.Writer) {
	defer close(in.done)
	boot, exitAfter := 20*time.Millisecond, time.Duration(0)
	heartbeat, panicBoot := true, false
	var text string
	for _, w := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "fake.boot":
			boot, _ = time.ParseDuration(v)
		case "fake.heartbeat":
			heartbeat = v != "never"
		case "fake.panic":
			panicBoot = true
		case "fake.exit":
			exitAfter, _ = time.ParseDuration(v)
		case "fake.console":
			text = strings.ReplaceAll(v, "_", " ")
		}
	}
	fmt.Fprintf(console, "[    0.000000] Linux version fake\n")
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-in.stop:
		case <-ctx.Done():
		}
		return false
	}
	if !wait(boot) {
		return
	}
	if panicBoot {
		fmt.Fprintf(console, "Kernel panic - not syncing: fake\n")
		in.result = "guest panic: Kernel panic - not syncing: fake"
		return
	}
	if heartbeat {
		close(in.hb)
	}
	if text != "" {
		fmt.Fprintln(console, text)
	}
	if exitAfter > 0 {
		if wait(exitAfter) {
			in.result = "guest powered off"
		}
		return
	}
	wait(365 * 24 * time.Hour)
}

// WriteEIF writes a small EIF for arch with the given kernel command line
// to dir/name and returns its path. kernelFill varies the kernel bytes so
// that EIFs differ in their measurements.
func WriteEIF(t testing.TB, dir, name, cmdline string, arch eif.Arch, kernelFill byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	var buf bytes.Buffer
	_, err := eif.Build(&buf, eif.BuildOptions{
		Kernel:    bytes.NewReader(bytes.Repeat([]byte{kernelFill}, 4096)),
		Cmdline:   cmdline,
		Ramdisks:  []eif.Blob{bytes.NewReader([]byte("070701 fake ramdisk"))},
		Name:      name,
		Arch:      arch,
		BuildTime: time.Unix(1700000000, 0),
	})
	if err != nil {
		t.Fatalf("build EIF: %v", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// SuperviseIfAsked makes a test binary act as "nitrovm supervise DIR" with
// the fake Launcher when its arguments say so: call it first in TestMain,
// with the subcommand name. It exits the process in that case.
func SuperviseIfAsked(sub string) {
	if len(os.Args) != 3 || os.Args[1] != sub {
		return
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	status := os.NewFile(enclave.StatusFD, "status")
	err := enclave.Supervise(context.Background(), os.Args[2], enclave.SuperviseOptions{
		Launcher: Launcher{}, Logger: logger, Status: status,
		Namespaces: os.Getenv(enclave.NamespacesEnv), Probe: os.Getenv(enclave.ProbeEnv) == "1",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

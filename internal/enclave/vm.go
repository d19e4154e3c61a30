package enclave

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/nitrovm/nitrovm/ca"
	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	nsmdev "github.com/nitrovm/nitrovm/internal/devices/virtio/nsm"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
	"github.com/nitrovm/nitrovm/internal/vmm"
	"github.com/nitrovm/nitrovm/internal/vsockhost"
	"github.com/nitrovm/nitrovm/kms"
	"github.com/nitrovm/nitrovm/nsm"
)

// VMLauncher boots enclaves as KVM microVMs: the EIF's kernel, command line
// and ramdisks, a virtio-vsock device (guest CID = enclave CID) backed by
// vsockhost, and a virtio-nsm device backed by an nsm.Module whose
// attestation documents are signed by the local CA.
type VMLauncher struct {
	// CAStateDir is the CA's directory; "" means the nsm package default.
	CAStateDir string
	// KMSStateDir is the key store of Spec.KMS's local KMS; "" means
	// kms.DefaultDir.
	KMSStateDir string
	// VCPUCPUs are the host CPUs the VM's vCPU threads may run on
	// (vmm.Config.VCPUCPUs, VCPUCPUsEnv); nil means anywhere.
	VCPUCPUs []int
}

// startKMS starts the enclave's local KMS on a loopback TLS port and
// returns the vsockhost forward to it.
// It also returns the key store's directory.
func (l VMLauncher) startKMS(ctx context.Context, logger *slog.Logger) (*kms.Local, vsockhost.Forward, string, error) {
	cfg := kms.LocalConfig{Dir: l.KMSStateDir, CADir: l.CAStateDir, TLSAddr: "127.0.0.1:0", Logger: logger}
	var err error
	if cfg.Dir == "" {
		if cfg.Dir, err = kms.DefaultDir(os.Getenv); err != nil {
			return nil, vsockhost.Forward{}, "", err
		}
	}
	if cfg.CADir == "" {
		if cfg.CADir, err = ca.DefaultDir(os.Getenv); err != nil {
			return nil, vsockhost.Forward{}, "", err
		}
	}
	local, err := kms.StartLocal(cfg)
	if err != nil {
		return nil, vsockhost.Forward{}, "", err
	}
	go func() {
		if err := local.Serve(ctx); err != nil {
			logger.Error("kms stopped", "error", err)
		}
	}()
	logger.Info("kms started", "endpoint", local.Endpoints.TLSEndpoint, "vsock_port", KMSVsockPort, "state_dir", cfg.Dir)
	return local, vsockhost.Forward{Port: KMSVsockPort, Addr: local.TLSAddr()}, cfg.Dir, nil
}

// Launch implements Launcher.Launch.
func (l VMLauncher) Launch(ctx context.Context, spec Spec) (_ Instance, err error) {
	logger := spec.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := vmm.CheckHost(); err != nil {
		return nil, wrapErr(KindBoot, err, "this host cannot run enclave VMs")
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// Listed now: the jail (spec.Contain) hides /proc.
	exe, err := readExePages()
	if err != nil {
		logger.Warn("list the executable's mappings; its pages stay mapped", "err", err)
	}
	// Before guest RAM is mapped (see allowTHPForGuest).
	if err := allowTHPForGuest(); err != nil {
		logger.Warn("transparent huge pages for guest RAM", "err", err)
	}

	f, err := eif.Open(spec.EIFPath)
	if err != nil {
		return nil, wrapErr(KindEIF, err, "open EIF")
	}
	cleanup = append(cleanup, func() { f.Close() })
	meas, err := f.Measure()
	if err != nil {
		return nil, wrapErr(KindEIF, err, "measure EIF")
	}
	measJSON, err := json.Marshal(meas)
	if err != nil {
		return nil, fmt.Errorf("encode measurements: %w", err)
	}
	cmdline, err := f.Cmdline()
	if err != nil {
		return nil, wrapErr(KindEIF, err, "read EIF cmdline")
	}

	opts := vsockhost.Options{UDSPath: spec.VsockUDS, AFVsock: spec.AFVsock, HeartbeatTimeout: spec.HeartbeatTimeout}
	for _, s := range spec.Forwards {
		fw, err := vsockhost.ParseForward(s)
		if err != nil {
			return nil, wrapErr(KindInvalidArgument, err, "Invalid argument provided. The parameter `forward` is not valid (`%s`)", s)
		}
		opts.Forwards = append(opts.Forwards, fw)
	}
	for _, s := range spec.Publishes {
		p, err := vsockhost.ParsePublish(s)
		if err != nil {
			return nil, wrapErr(KindInvalidArgument, err, "Invalid argument provided. The parameter `publish` is not valid (`%s`)", s)
		}
		opts.Publishes = append(opts.Publishes, p)
	}
	var kmsLocal *kms.Local
	var kmsDir string
	if spec.KMS {
		local, fw, dir, err := l.startKMS(ctx, logger.With("part", "kms"))
		if err != nil {
			return nil, fmt.Errorf("start KMS: %w", err)
		}
		kmsLocal, kmsDir = local, dir
		cleanup = append(cleanup, func() { local.Close() })
		opts.Forwards = append(opts.Forwards, fw)
	}
	host, err := vsockhost.New(opts, logger.With("part", "vsockhost"))
	if err != nil {
		return nil, fmt.Errorf("set up vsock host endpoints: %w", err)
	}
	cleanup = append(cleanup, func() { host.Close() })
	vdev, err := vsock.New(spec.CID, host, logger.With("part", "vsock"))
	if err != nil {
		return nil, fmt.Errorf("create vsock device: %w", err)
	}
	cleanup = append(cleanup, func() { vdev.Close() })
	if err := host.Serve(vdev); err != nil {
		return nil, fmt.Errorf("serve vsock host endpoints: %w", err)
	}

	mod, err := nsm.NewEnclaveModule(nsm.EnclaveConfig{
		ModuleID: spec.ID,
		PCR0:     meas.PCR0, PCR1: meas.PCR1, PCR2: meas.PCR2, PCR8: meas.PCR8,
		ParentRoleARN: spec.ParentRoleARN, ParentInstanceID: spec.ParentID,
		Debug:    spec.Debug,
		StateDir: l.CAStateDir,
	})
	if err != nil {
		return nil, fmt.Errorf("create NSM: %w", err)
	}
	ndev := nsmdev.New(mod, logger.With("part", "nsm"))

	kernel := f.Kernel()
	vm, err := vmm.Build(ctx, vmm.Config{
		Kernel: kernel, KernelSize: kernel.Size(), Cmdline: cmdline, Initrd: f.Ramdisks(),
		MemoryMiB: spec.MemoryMiB, CPUs: len(spec.CPUIDs), Console: spec.Console,
		Devices:  []virtio.Device{vdev, ndev},
		Logger:   logger.With("part", "vmm"),
		VCPUCPUs: l.VCPUCPUs,
	})
	if err != nil {
		return nil, wrapErr(KindBoot, err, "build VM")
	}
	// The supervisor is a long-lived process per enclave: give the OS back
	// the heap that reading and measuring the EIF left behind and the
	// executable's pages that starting up mapped (see exePages) before the
	// vCPUs run, and both again whenever the last vsock connection closes
	// (the heartbeat's, then each burst of traffic) or a burst of NSM
	// requests ends while vsock is idle, now rather than at the
	// scavenger's pace. (The per-idle drop was taken out once on the
	// suspicion that its TLB shootdowns provoked the nested emulator's
	// faults; their cause was QEMU's IGNNE race, docs/nested.md.)
	release := func() {
		if err := releaseMemory(exe); err != nil {
			logger.Warn("release memory", "err", err)
		}
	}
	release()
	vdev.OnIdle(release)
	// The guest's NSM requests run code nothing else at idle runs (CBOR,
	// the DRBG), and Linux's nsm-hwrng makes one every few seconds to a
	// minute: drop those pages again after each, unless vsock is busy.
	ndev.OnIdle(func() {
		if vdev.Idle() {
			release()
		}
	})

	if spec.Contain != nil {
		var paths []string
		if kmsLocal != nil {
			paths = append(paths, kmsDir)
		}
		if err := spec.Contain(paths); err != nil {
			vm.Close()
			return nil, wrapErr(KindBoot, err, "contain the enclave process")
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	in := &vmInstance{meas: measJSON, hb: host.Heartbeat(), done: make(chan struct{}), cancel: cancel, vm: vm}
	go func() {
		defer close(in.done)
		exit, runErr := vm.Run(runCtx)
		in.setResult(exitResult(exit, runErr))
		if _, ok := host.HeartbeatAt(); !ok && exit.Reason != vmm.ExitStopped {
			// It ended before its heartbeat: the vsock packets say whether
			// the guest tried, and which side was late.
			for _, l := range vdev.DebugState() {
				logger.Warn("vsock state at an exit before the heartbeat", "text", l)
			}
		}
		in.dumpMu.Lock()
		in.vm = nil // no dumps once the VM is being released.
		in.dumpMu.Unlock()
		var errs []error
		errs = append(errs, vdev.Close(), host.Close(), vm.Close(), f.Close())
		if kmsLocal != nil {
			errs = append(errs, kmsLocal.Close())
		}
		if err := errors.Join(errs...); err != nil {
			logger.Warn("release VM resources", "err", err)
		}
		cancel()
	}()
	return in, nil
}

// exitResult describes how a VM ended, "" for a requested stop.
func exitResult(e vmm.Exit, err error) string {
	switch e.Reason {
	case vmm.ExitStopped:
		return ""
	case vmm.ExitReboot:
		if e.Detail != "" {
			return "enclave shut down: " + e.Detail
		}
		return "enclave shut down"
	case vmm.ExitPanic:
		return "guest panic: " + e.Detail
	}
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s: %s", e.Reason, e.Detail)
}

// vmInstance is a running VMLauncher VM.
type vmInstance struct {
	meas   json.RawMessage
	hb     <-chan struct{}
	done   chan struct{}
	cancel context.CancelFunc

	mu     sync.Mutex
	result string

	dumpMu sync.Mutex
	vm     *vmm.VM // nil once Run returned; guarded by dumpMu.
}

// Dump writes the VM's state (vCPUs, devices, vsock connections) to the
// enclave's log, for diagnosing a hang; it does nothing once the VM ended.
func (in *vmInstance) Dump(cause string) {
	in.dumpMu.Lock()
	defer in.dumpMu.Unlock()
	if in.vm != nil {
		in.vm.Dump(cause)
	}
}

func (in *vmInstance) setResult(s string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.result = s
}

// Measurements implements Instance.Measurements.
func (in *vmInstance) Measurements() json.RawMessage { return in.meas }

// Heartbeat implements Instance.Heartbeat.
func (in *vmInstance) Heartbeat() <-chan struct{} { return in.hb }

// Done implements Instance.Done.
func (in *vmInstance) Done() <-chan struct{} { return in.done }

// Result implements Instance.Result.
func (in *vmInstance) Result() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.result
}

// Stop implements Instance.Stop.
func (in *vmInstance) Stop() { in.cancel() }

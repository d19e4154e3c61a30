package enclave

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Image is what run-enclave needs to know about an EIF before starting it.
type Image struct {
	Arch string // "x86_64" or "aarch64"
	Size int64  // file size in bytes

	// HasMetadata says the EIF has a metadata section; then ImageName,
	// ImageVersion and Metadata (describe-eif's "Metadata" object) are set.
	HasMetadata  bool
	ImageName    string
	ImageVersion string
	Metadata     json.RawMessage
}

// Spawner starts a detached supervisor for an enclave directory.
type Spawner interface {
	// Spawn starts "supervise dir" detached from the caller. The returned
	// reader yields the supervisor's start status line; EOF without a line
	// means the supervisor died.
	Spawn(ctx context.Context, dir string) (io.ReadCloser, error)
}

// Manager runs, describes, terminates and attaches to enclaves in one
// state directory.
type Manager struct {
	Store  Store
	Logger *slog.Logger
	// Inspect reads an EIF's architecture and size. Errors of an
	// unspecified Kind are reported as EIF parsing errors.
	Inspect func(path string) (Image, error)
	Spawner Spawner
	// CPUPool is the emulated Nitro Enclaves CPU pool; nil means
	// DefaultCPUPool.
	CPUPool []uint32
	// HostArch is the host architecture in EIF terms; "" means HostArch().
	HostArch string
	// MemAvailableMiB reports the memory the host can give an enclave;
	// nil skips the check.
	MemAvailableMiB func() (uint64, error)
	// Progress receives nitro-cli's progress lines ("Start allocating
	// memory..."); nil discards them.
	Progress io.Writer
}

// startGrace is how much longer than the heartbeat timeout run waits for
// the supervisor's verdict, which covers building the VM.
const startGrace = 60 * time.Second

// validParentID reports whether id may be a parent instance ID: 1 to 64
// of [A-Za-z0-9._-], starting with a letter or digit (it becomes part of
// file names). A loop, not a package-level regexp: the 64-fold repetition
// compiled to about 60 KB of heap in every process, supervisors included.
func validParentID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}

func (m *Manager) progress(format string, args ...any) {
	if m.Progress != nil {
		fmt.Fprintf(m.Progress, format+"\n", args...)
	}
}

// Run validates o, reserves the enclave's resources, starts its supervisor
// and waits until the enclave's heartbeat arrived. It returns the enclave's
// record. On failure nothing stays reserved.
func (m *Manager) Run(ctx context.Context, o RunOptions) (*Record, error) {
	if err := checkOptions(&o); err != nil {
		return nil, err
	}
	if o.ParentID == "" {
		o.ParentID = DefaultParentID
	}
	if !validParentID(o.ParentID) {
		return nil, newErr(KindInvalidArgument, "Invalid argument provided. The parameter `parent-id` is not a valid instance ID (`%s`)", o.ParentID)
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	abs, err := filepath.Abs(o.EIFPath)
	if err != nil {
		return nil, wrapErr(KindFileOperation, err, "resolve EIF path")
	}
	o.EIFPath = abs
	img, err := m.Inspect(abs)
	if err != nil {
		if KindOf(err) == KindUnspecified {
			err = wrapErr(KindEIF, err, "Failed to read the EIF file %s", abs)
		}
		return nil, err
	}
	host := m.HostArch
	if host == "" {
		host = HostArch()
	}
	if img.Arch != host {
		return nil, newErr(KindEIF, "The EIF %s is built for %s, but this host is %s", abs, img.Arch, host)
	}
	mem, err := checkMemory(o.MemoryMiB, img.Size)
	if err != nil {
		return nil, err
	}
	if m.MemAvailableMiB != nil {
		avail, err := m.MemAvailableMiB()
		if err != nil {
			return nil, wrapErr(KindFileOperation, err, "read available memory")
		}
		if mem > avail {
			return nil, newErr(KindInsufficientMemoryAvailable, "Insufficient memory available. User provided `memory` is %d MB, which is more than the available memory (%d MB).", mem, avail)
		}
	}

	rec, dir, err := m.reserve(o, mem, img)
	if err != nil {
		return nil, err
	}
	m.progress("Start allocating memory...")
	status, err := m.Spawner.Spawn(ctx, dir)
	if err != nil {
		m.Store.remove(dir)
		return nil, wrapErr(KindProcessSpawn, err, "Failed to spawn the enclave process")
	}
	defer status.Close()
	st, err := waitStatus(ctx, status, o.HeartbeatTimeout+startGrace)
	if err != nil {
		m.abandon(dir, rec.ID)
		return nil, err
	}
	if !st.OK {
		m.abandon(dir, rec.ID)
		k := st.Kind
		if k == KindUnspecified {
			k = KindBoot
		}
		return nil, &Error{Kind: k, Msg: st.Error}
	}
	rec, err = readRecord(dir)
	if err != nil {
		return nil, wrapErr(KindFileOperation, err, "read enclave record")
	}
	m.progress("Started enclave with enclave-cid: %d, memory: %d MiB, cpu-ids: %s", rec.CID, rec.MemoryMiB, formatCPUIDs(rec.CPUIDs))
	m.progress("enclave booted in %d ms", rec.BootTimeMs)
	return rec, nil
}

// abandon stops a failed start: it terminates the supervisor if it still
// runs and frees the reservation.
func (m *Manager) abandon(dir, id string) {
	rec, err := readRecord(dir)
	if err != nil {
		m.Store.removeDebris(dir) // the supervisor has cleaned up
		return
	}
	if rec.PID != 0 && rec.alive() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if resp, conn, _, err := controlCall(ctx, dir, opTerminate); err == nil {
			conn.Close()
			if resp.OK {
				return
			}
		}
		// A supervisor killed during its start (by its seccomp filter,
		// say) closes its status pipe before the kernel has finished its
		// exit, so it can still look alive here: give it exitGrace.
		if waitExit(ctx, rec, exitGrace) {
			m.Store.remove(dir)
			return
		}
		if _, err := os.Stat(dir); err == nil {
			m.logger().Warn("could not stop supervisor of failed enclave", "enclave", id, "pid", rec.PID)
		}
		return
	}
	m.Store.remove(dir)
}

// waitStatus reads the supervisor's start status line.
func waitStatus(ctx context.Context, r io.Reader, timeout time.Duration) (*startStatus, error) {
	type result struct {
		line []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadBytes('\n')
		ch <- result{line, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.err != nil && len(res.line) == 0 {
			return nil, wrapErr(KindBoot, res.err, "Waiting on enclave to boot failed: the enclave process exited without reporting")
		}
		var st startStatus
		if err := json.Unmarshal(res.line, &st); err != nil {
			return nil, wrapErr(KindBoot, err, "Waiting on enclave to boot failed: bad status from the enclave process")
		}
		return &st, nil
	case <-timer.C:
		return nil, newErr(KindBoot, "Waiting on enclave to boot failed: no answer from the enclave process within %s", timeout)
	case <-ctx.Done():
		return nil, wrapErr(KindBoot, ctx.Err(), "Waiting on enclave to boot failed")
	}
}

// reserve picks the enclave's slot, ID, name, CID and CPUs and creates its
// directory and record, all under the state lock.
func (m *Manager) reserve(o RunOptions, mem uint64, img Image) (*Record, string, error) {
	unlock, err := m.Store.lock()
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	live, err := m.Store.scanLocked()
	if err != nil {
		return nil, "", err
	}
	names := map[string]bool{}
	cids := map[uint64]string{}
	usedCPU := map[uint32]string{}
	for _, r := range live {
		names[r.Name] = true
		cids[r.CID] = r.ID
		for _, c := range r.CPUIDs {
			usedCPU[c] = r.ID
		}
	}

	name := o.Name
	if name == "" {
		name = defaultName(o.EIFPath)
	}
	name = uniqueName(name, names)

	cid := o.CID
	if cid != 0 {
		if other, ok := cids[cid]; ok {
			return nil, "", newErr(KindInvalidArgument, "Invalid argument provided. CID %d is already used by enclave %s", cid, other)
		}
	} else {
		for cid = FirstAutoCID; cids[cid] != ""; cid++ {
		}
	}

	cpus, err := m.pickCPUs(o, usedCPU)
	if err != nil {
		return nil, "", err
	}

	slot, err := m.Store.nextSlotLocked(live)
	if err != nil {
		return nil, "", err
	}
	id := fmt.Sprintf("%s-enc%x", o.ParentID, slot)
	dir := m.Store.enclaveDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, "", wrapErr(KindFileOperation, err, "create enclave directory")
	}
	uds := o.VsockUDS
	if uds == "" {
		uds = filepath.Join(dir, vsockSocket)
	}
	pid, start := selfStart()
	rec := &Record{
		ID: id, Name: name, Slot: slot, CID: cid, CPUIDs: cpus, MemoryMiB: mem, Debug: o.Debug,
		EIFPath: o.EIFPath, ParentID: o.ParentID, ParentRoleARN: o.ParentRoleARN,
		VsockUDS: uds, Forwards: o.Forwards, Publishes: o.Publishes, AFVsock: o.AFVsock,
		HeartbeatTimeout: o.HeartbeatTimeout, KMS: o.KMS, Jail: o.Jail,
		State: StateStarting, OwnerPID: pid, OwnerStart: start, Created: now(),
	}
	if img.HasMetadata {
		rec.ImageName, rec.ImageVersion = &img.ImageName, &img.ImageVersion
		rec.Metadata = img.Metadata
	}
	if err := writeRecord(dir, rec); err != nil {
		os.RemoveAll(dir)
		return nil, "", wrapErr(KindFileOperation, err, "reserve enclave")
	}
	return rec, dir, nil
}

// pickCPUs checks the requested CPUs against the pool and the CPUs other
// enclaves hold, returning the enclave's CPU IDs.
func (m *Manager) pickCPUs(o RunOptions, used map[uint32]string) ([]uint32, error) {
	pool := m.CPUPool
	if pool == nil {
		pool = DefaultCPUPool()
	}
	inPool := map[uint32]bool{}
	for _, c := range pool {
		inPool[c] = true
	}
	if len(o.CPUIDs) > 0 {
		for _, c := range o.CPUIDs {
			if !inPool[c] {
				return nil, newErr(KindNoSuchCPU, "No such CPU available in the pool. User provided `cpu-ids` contains CPU %d, which is not available in the pool.", c)
			}
			if other, ok := used[c]; ok {
				return nil, newErr(KindNoSuchCPU, "No such CPU available in the pool. User provided `cpu-ids` contains CPU %d, which is used by enclave %s.", c, other)
			}
		}
		return append([]uint32(nil), o.CPUIDs...), nil
	}
	if o.CPUCount > len(pool) {
		return nil, newErr(KindInsufficientCPUs, "Insufficient CPUs available in the pool. User provided `cpu-count` is %d, which is more than the configured CPU pool size.", o.CPUCount)
	}
	var ids []uint32
	for _, c := range pool {
		if _, ok := used[c]; !ok {
			ids = append(ids, c)
			if len(ids) == o.CPUCount {
				return ids, nil
			}
		}
	}
	return nil, newErr(KindInsufficientCPUs, "Insufficient CPUs available in the pool. User provided `cpu-count` is %d, which is more than the %d CPUs left free in the pool.", o.CPUCount, len(ids))
}

// List returns the running and terminating enclaves, ordered by slot.
// Enclaves still waiting for their heartbeat are not listed.
func (m *Manager) List() ([]*Record, error) {
	all, err := m.Store.Scan()
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, r := range all {
		if r.State != StateStarting {
			out = append(out, r)
		}
	}
	return out, nil
}

// Lookup returns the live enclave with the given ID.
func (m *Manager) Lookup(id string) (*Record, error) {
	all, err := m.Store.Scan()
	if err != nil {
		return nil, err
	}
	for _, r := range all {
		if r.ID == id {
			return r, nil
		}
	}
	return nil, newErr(KindSocket, "Failed to connect to specific enclave process: no enclave with ID %q", id)
}

// IDByName returns the ID of the one live enclave called name.
func (m *Manager) IDByName(name string) (string, error) {
	all, err := m.Store.Scan()
	if err != nil {
		return "", err
	}
	var ids []string
	for _, r := range all {
		if r.Name == name {
			ids = append(ids, r.ID)
		}
	}
	switch len(ids) {
	case 0:
		return "", newErr(KindNaming, "No enclave matched the given name.")
	case 1:
		return ids[0], nil
	}
	return "", newErr(KindNaming, "Conflicting enclave names have been found.")
}

// Terminate stops the enclave with the given ID and returns its final
// record.
func (m *Manager) Terminate(ctx context.Context, id string) (*Record, error) {
	rec, err := m.Lookup(id)
	if err != nil {
		return nil, err
	}
	return m.terminate(ctx, rec)
}

func (m *Manager) terminate(ctx context.Context, rec *Record) (*Record, error) {
	dir := m.Store.enclaveDir(rec.ID)
	resp, conn, _, err := controlCall(ctx, dir, opTerminate)
	if err != nil {
		// An enclave that ended by itself (its guest powered off) has a
		// supervisor that closes its control socket before it exits and
		// its record goes: that enclave is terminated already, not
		// unreachable.
		if waitExit(ctx, rec, exitGrace) {
			m.Store.remove(dir)
			return rec, nil
		}
		return nil, wrapErr(KindConnection, err, "Failed to connect to the enclave process of %s", rec.ID)
	}
	conn.Close()
	if !resp.OK {
		return nil, &Error{Kind: resp.Kind, Msg: resp.Error}
	}
	m.Store.removeDebris(dir)
	if resp.Record == nil {
		return rec, nil
	}
	return resp.Record, nil
}

// TerminateAll stops every live enclave, including those still starting.
// It returns the records of the enclaves it stopped, and an error if any
// could not be stopped.
func (m *Manager) TerminateAll(ctx context.Context) ([]*Record, error) {
	all, err := m.Store.Scan()
	if err != nil {
		return nil, err
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   = make([]*Record, len(all))
		failed []string
	)
	for i, r := range all {
		if r.PID == 0 {
			continue // reserved, supervisor not yet running
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fin, err := m.terminate(ctx, r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, r.ID)
				return
			}
			done[i] = fin
		}()
	}
	wg.Wait()
	var out []*Record
	for _, r := range done {
		if r != nil {
			out = append(out, r)
		}
	}
	if len(failed) > 0 {
		return out, newErr(KindConnection, "Failed to connect to %d enclave processes (%s)", len(failed), strings.Join(failed, ", "))
	}
	return out, nil
}

// Console copies the console of the debug-mode enclave id to w until the
// enclave exits, ctx ends, or disconnect (if non-zero) has passed.
// connected is called once the console is attached.
func (m *Manager) Console(ctx context.Context, id string, w io.Writer, disconnect time.Duration, connected func()) error {
	rec, err := m.Lookup(id)
	if err != nil {
		return err
	}
	if !rec.Debug {
		return newErr(KindConsole, "Enclave console connection failure. The enclave was not started with the debug flag set, include '--debug-mode' in the run-enclave command")
	}
	if disconnect > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, disconnect)
		defer cancel()
	}
	resp, conn, br, err := controlCall(ctx, m.Store.enclaveDir(id), opConsole)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return wrapErr(KindConsole, err, "Enclave console connection failure")
	}
	defer conn.Close()
	if !resp.OK {
		return &Error{Kind: resp.Kind, Msg: "Enclave console connection failure. " + resp.Error}
	}
	if connected != nil {
		connected()
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, err = io.Copy(w, br)
	if err != nil && ctx.Err() == nil && !errors.Is(err, io.EOF) {
		return wrapErr(KindConsole, err, "Enclave console read error")
	}
	return nil
}

// exitGrace is how long terminate waits for a supervisor that no longer
// answers to exit: one ends its enclave's VM, logs and removes its record
// in well under a second.
const exitGrace = 3 * time.Second

// waitExit reports whether rec's supervisor is gone, or goes within
// grace (polling), before ctx ends.
func waitExit(ctx context.Context, rec *Record, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	for rec.alive() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

package enclave

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// StateDirEnv names the environment variable that overrides the state
// directory.
const StateDirEnv = "NITROVM_STATE_DIR"

// DefaultStateDir returns the per-user state directory: $NITROVM_STATE_DIR,
// else $XDG_RUNTIME_DIR/nitrovm, else /run/nitrovm for root, else
// /tmp/nitrovm-<uid>. getenv may be nil.
func DefaultStateDir(getenv func(string) string, uid int) string {
	get := func(k string) string {
		if getenv == nil {
			return ""
		}
		return getenv(k)
	}
	if d := get(StateDirEnv); d != "" {
		return d
	}
	if d := get("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "nitrovm")
	}
	if uid == 0 {
		return "/run/nitrovm"
	}
	return fmt.Sprintf("/tmp/nitrovm-%d", uid)
}

// Store is a state directory holding one subdirectory per enclave.
type Store struct {
	Dir string // the state directory
}

// Names of the files at the top of the state directory.
const (
	lockFile     = ".lock"
	nextSlotFile = ".next-slot"
	eventsFile   = "events.log"
)

// ensure creates the state directory, private to the user.
func (s Store) ensure() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return wrapErr(KindFileOperation, err, "create state directory %s", s.Dir)
	}
	return nil
}

// lock takes the state directory's exclusive lock. All reservations and
// removals of enclave directories happen under it.
func (s Store) lock() (unlock func(), err error) {
	if err := s.ensure(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, wrapErr(KindFileOperation, err, "open state lock")
	}
	if err := lockExclusive(f); err != nil {
		f.Close()
		return nil, wrapErr(KindFileOperation, err, "lock state directory %s", s.Dir)
	}
	return func() { f.Close() }, nil
}

// enclaveDir returns the directory of the enclave with the given ID.
func (s Store) enclaveDir(id string) string { return filepath.Join(s.Dir, id) }

// scanLocked reads every enclave directory, removes those whose processes
// are gone, and returns the live records ordered by slot. The caller holds
// the lock.
func (s Store) scanLocked() ([]*Record, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, wrapErr(KindReadFromDisk, err, "read state directory %s", s.Dir)
	}
	var live []*Record
	for _, e := range ents {
		if !e.IsDir() || !strings.Contains(e.Name(), "-enc") {
			continue
		}
		dir := filepath.Join(s.Dir, e.Name())
		r, err := readRecord(dir)
		if err != nil || !r.alive() {
			// Directories are created together with their record under
			// the lock, so one without a readable record is debris (a
			// contained supervisor leaves its emptied directory so).
			// A record whose process is gone is an enclave whose
			// supervisor died without cleaning up (killed, e.g. by
			// its seccomp filter): say so in the events log.
			if err == nil && r.PID != 0 {
				s.appendEvent(diedEvent(r))
			}
			os.RemoveAll(dir)
			continue
		}
		live = append(live, r)
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Slot < live[j].Slot })
	return live, nil
}

// Scan returns the live enclave records ordered by slot, cleaning up the
// entries of dead enclaves on the way.
func (s Store) Scan() ([]*Record, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.scanLocked()
}

// diedEvent is the events log line for an enclave whose supervisor died.
func diedEvent(r *Record) []byte {
	line, _ := json.Marshal(struct {
		Time   time.Time
		Event  string
		ID     string `json:"EnclaveID"`
		Name   string `json:"EnclaveName"`
		Detail string
	}{now(), "died", r.ID, r.Name, fmt.Sprintf("supervisor (PID %d) exited without cleaning up; see its log", r.PID)})
	return line
}

// removeDebris deletes an enclave directory under the lock if it has no
// record any more: what a contained supervisor leaves at exit.
func (s Store) removeDebris(dir string) {
	unlock, err := s.lock()
	if err != nil {
		return
	}
	defer unlock()
	if _, err := readRecord(dir); err != nil {
		os.RemoveAll(dir)
	}
}

// remove deletes an enclave directory under the lock.
func (s Store) remove(dir string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.RemoveAll(dir); err != nil {
		return wrapErr(KindFileOperation, err, "remove %s", dir)
	}
	return nil
}

// nextSlotLocked returns the next never-used slot number and records it.
// The caller holds the lock.
func (s Store) nextSlotLocked(live []*Record) (uint64, error) {
	p := filepath.Join(s.Dir, nextSlotFile)
	next := uint64(1)
	if b, err := os.ReadFile(p); err == nil {
		if n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err == nil && n > 0 {
			next = n
		}
	}
	for _, r := range live {
		if r.Slot >= next {
			next = r.Slot + 1
		}
	}
	if err := os.WriteFile(p, []byte(strconv.FormatUint(next+1, 10)+"\n"), 0o600); err != nil {
		return 0, wrapErr(KindFileOperation, err, "record next slot")
	}
	return next, nil
}

// appendEvent adds one line to the state directory's events log, which
// records how enclaves ended. Failures are returned for the caller to log.
func (s Store) appendEvent(line []byte) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, eventsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open events log: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write events log: %w", err)
	}
	return nil
}

// alive reports whether the process owning r still runs: the supervisor
// once it has started, else the process that made the reservation.
func (r *Record) alive() bool {
	if r.PID != 0 {
		return processAlive(r.PID, r.PIDStart)
	}
	if r.OwnerPID != 0 {
		return processAlive(r.OwnerPID, r.OwnerStart)
	}
	return false
}

// processAlive reports whether pid runs and, when start is non-zero, was
// started at start (which rules out a recycled PID).
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && err != unix.EPERM {
		return false
	}
	got, err := processStart(pid)
	switch {
	case errors.Is(err, errExited):
		return false
	case start == 0:
		return true
	}
	return err == nil && got == start
}

// errExited reports a process that has exited but not been reaped.
var errExited = errors.New("enclave: process has exited")

// processStart returns the start time of pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat).
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after it start past the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d: %w", pid, errExited)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// selfStart returns the running process's PID and start time.
func selfStart() (int, uint64) {
	pid := os.Getpid()
	st, _ := processStart(pid)
	return pid, st
}

// now is the reservation clock; records carry wall-clock times.
func now() time.Time { return time.Now().UTC() }

// lockExclusive takes an exclusive flock on f, waiting for it, and starts
// the wait again when a signal interrupts it (the Go runtime's preemption
// signals do).
func lockExclusive(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

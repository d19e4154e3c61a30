package kms

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// StateFile is the file in a KMS state directory holding every key and
// alias, JSON, mode 0600, replaced atomically on each change.
const StateFile = "keys.json"

// stateVersion is the version of StateFile's format.
const stateVersion = 1

// DefaultDir returns the per-user KMS state directory, beside the CA's:
// $NITROVM_STATE_DIR/kms if set, else $XDG_STATE_HOME/nitrovm/kms, else
// $HOME/.local/state/nitrovm/kms.
func DefaultDir(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	switch {
	case getenv("NITROVM_STATE_DIR") != "":
		return filepath.Join(getenv("NITROVM_STATE_DIR"), "kms"), nil
	case getenv("XDG_STATE_HOME") != "":
		return filepath.Join(getenv("XDG_STATE_HOME"), "nitrovm", "kms"), nil
	case getenv("HOME") != "":
		return filepath.Join(getenv("HOME"), ".local", "state", "nitrovm", "kms"), nil
	}
	return "", errors.New("kms: no state directory: set NITROVM_STATE_DIR, XDG_STATE_HOME or HOME")
}

// state is StateFile's content.
type state struct {
	Version int
	Keys    []keyRecord
	Aliases []aliasRecord
}

// aliasRecord is a persisted alias.
type aliasRecord struct {
	Name    string // "alias/..."
	KeyID   string
	Created time.Time
}

// store holds keys and aliases in memory and, when dir is set, persists
// every change before it is acknowledged.
type store struct {
	dir     string
	mu      sync.RWMutex
	keys    map[string]*key
	aliases map[string]aliasRecord
	stamp   fileStamp // StateFile as last read or written
}

// fileStamp identifies one version of StateFile.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// lockFile serialises writers of StateFile across processes.
const lockFile = "lock"

// openStore loads dir's state, creating dir (0700) if needed; dir "" keeps
// everything in memory.
func openStore(dir string) (*store, error) {
	s := &store{dir: dir, keys: map[string]*key{}, aliases: map[string]aliasRecord{}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kms: state directory: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// statState returns StateFile's stamp (zero if it does not exist).
func (s *store) statState() (fileStamp, error) {
	fi, err := os.Stat(filepath.Join(s.dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, fmt.Errorf("kms: %w", err)
	}
	return fileStamp{fi.Size(), fi.ModTime()}, nil
}

// load replaces the in-memory state with StateFile's; callers hold mu for
// writing (or own s exclusively).
func (s *store) load() error {
	path := filepath.Join(s.dir, StateFile)
	stamp, err := s.statState()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kms: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("kms: %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("kms: %s: version %d, want %d", path, st.Version, stateVersion)
	}
	keys := map[string]*key{}
	for _, r := range st.Keys {
		k := &key{keyRecord: r}
		if err := k.load(); err != nil {
			return fmt.Errorf("kms: %s: %w", path, err)
		}
		keys[r.KeyID] = k
	}
	aliases := map[string]aliasRecord{}
	for _, a := range st.Aliases {
		aliases[a.Name] = a
	}
	s.keys, s.aliases, s.stamp = keys, aliases, stamp
	return nil
}

// refreshLocked reloads StateFile if another process changed it since this
// one last read or wrote it; callers hold mu for writing. It reports
// whether anything was reloaded.
func (s *store) refreshLocked() (bool, error) {
	if s.dir == "" {
		return false, nil
	}
	stamp, err := s.statState()
	if err != nil || stamp == s.stamp {
		return false, err
	}
	return true, s.load()
}

// refresh reloads StateFile if another process changed it: one stat per
// call, the lock and a reload only on a change. A failed reload keeps the
// state as it was.
func (s *store) refresh() {
	if s.dir == "" {
		return
	}
	stamp, err := s.statState()
	s.mu.RLock()
	same := err != nil || stamp == s.stamp
	s.mu.RUnlock()
	if same {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked()
}

// update runs f, which changes the in-memory state and returns how to undo
// the change, then persists the state. Across processes sharing the state
// directory it holds a lock file and first reloads changes made by others,
// so that no process overwrites another's acknowledged change.
func (s *store) update(f func() (undo func(), err error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		_, err := f()
		return err
	}
	lk, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return errorf(ErrInternal, "lock state: %v", err)
	}
	defer lk.Close()
	if err := unix.Flock(int(lk.Fd()), unix.LOCK_EX); err != nil {
		return errorf(ErrInternal, "lock state: %v", err)
	}
	defer unix.Flock(int(lk.Fd()), unix.LOCK_UN)
	if _, err := s.refreshLocked(); err != nil {
		return errorf(ErrInternal, "reload state: %v", err)
	}
	undo, err := f()
	if err != nil {
		return err
	}
	if err := s.commit(); err != nil {
		undo()
		return errorf(ErrInternal, "persist state: %v", err)
	}
	return nil
}

// commit writes the state; callers hold mu for writing and the lock file.
func (s *store) commit() error {
	if s.dir == "" {
		return nil
	}
	st := state{Version: stateVersion}
	for _, k := range s.keys {
		st.Keys = append(st.Keys, k.keyRecord)
	}
	sort.Slice(st.Keys, func(i, j int) bool { return st.Keys[i].KeyID < st.Keys[j].KeyID })
	for _, a := range s.aliases {
		st.Aliases = append(st.Aliases, a)
	}
	sort.Slice(st.Aliases, func(i, j int) bool { return st.Aliases[i].Name < st.Aliases[j].Name })
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.dir, StateFile, data); err != nil {
		return err
	}
	s.stamp, err = s.statState()
	return err
}

// writeAtomic replaces dir/name with data: a 0600 temporary file, fsync,
// rename, fsync of the directory, so that a crash leaves the old or the new
// content and never loses an acknowledged change.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("kms: write %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("kms: write %s: sync directory: %w", name, err)
	}
	return nil
}

// resolve finds the key an identifier names: key ID, key ARN, alias name
// or alias ARN. Callers hold mu.
func (s *store) resolve(id string) (*key, error) {
	if id == "" {
		return nil, errorf(ErrValidation, "KeyId is required")
	}
	name, arnPrefix := id, ""
	if strings.HasPrefix(id, "arn:") {
		// arn:aws:kms:REGION:ACCOUNT:key/ID or ...:alias/NAME
		parts := strings.SplitN(id, ":", 6)
		if len(parts) != 6 {
			return nil, errorf(ErrNotFound, "Invalid arn %s", id)
		}
		name, arnPrefix = parts[5], strings.Join(parts[:5], ":")+":"
	}
	if strings.HasPrefix(name, "alias/") {
		a, ok := s.aliases[name]
		if !ok {
			return nil, errorf(ErrNotFound, "Alias %s is not found.", id)
		}
		name = a.KeyID
	}
	name = strings.TrimPrefix(name, "key/")
	k, ok := s.keys[name]
	// An ARN names the partition, region and account too: another's is
	// not this key, as in KMS.
	if !ok || arnPrefix != "" && !strings.HasPrefix(k.Arn, arnPrefix) {
		return nil, errorf(ErrNotFound, "Key '%s' does not exist", id)
	}
	return k, nil
}

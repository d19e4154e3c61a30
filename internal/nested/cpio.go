package nested

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Entry is one file of an initramfs written by WriteCPIO. Exactly one of
// HostPath, Data or Linkname is used, in that order of preference; an entry
// with none of them and Dir set is a directory.
type Entry struct {
	// Name is the absolute path in the archive ("/bin/nitrovm").
	Name string
	// Mode holds the permission bits; zero means 0755 for host files that
	// are executable, else 0644 (0755 for directories).
	Mode os.FileMode
	// HostPath is a file on the host whose contents are copied.
	HostPath string
	// Data is the file's contents when HostPath is empty.
	Data []byte
	// Linkname makes the entry a symbolic link to it.
	Linkname string
	// Dir makes the entry a directory.
	Dir bool
}

// WriteCPIO writes entries as an uncompressed newc ("070701") cpio archive,
// the initramfs format Linux unpacks. Parent directories are created as
// needed; entries are written sorted by name, with a fixed modification
// time, so equal inputs give equal archives.
func WriteCPIO(w io.Writer, entries []Entry) error {
	sorted := append([]Entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	cw := cpio.NewWriter(w)
	dirs := map[string]bool{"": true, ".": true}
	mtime := time.Unix(0, 0)
	mkdirs := func(p string) error {
		var parents []string
		for d := path.Dir(p); !dirs[d] && d != "/"; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			d := parents[i]
			dirs[d] = true
			h := &cpio.Header{Name: strings.TrimPrefix(d, "/"), Mode: cpio.TypeDir | 0o755, ModTime: mtime}
			if err := cw.WriteHeader(h); err != nil {
				return fmt.Errorf("cpio: dir %s: %w", d, err)
			}
		}
		return nil
	}
	for _, e := range sorted {
		name := path.Clean("/" + e.Name)
		if name == "/" {
			continue
		}
		if err := mkdirs(name); err != nil {
			return err
		}
		rel := strings.TrimPrefix(name, "/")
		switch {
		case e.HostPath != "":
			if err := writeHostFile(cw, rel, e, mtime); err != nil {
				return err
			}
		case e.Data != nil:
			mode := e.Mode.Perm()
			if mode == 0 {
				mode = 0o644
			}
			h := &cpio.Header{Name: rel, Mode: cpio.TypeReg | cpio.FileMode(mode), Size: int64(len(e.Data)), ModTime: mtime}
			if err := cw.WriteHeader(h); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
			if _, err := cw.Write(e.Data); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
		case e.Linkname != "":
			h := &cpio.Header{Name: rel, Mode: cpio.TypeSymlink | 0o777, Linkname: e.Linkname,
				Size: int64(len(e.Linkname)), ModTime: mtime}
			if err := cw.WriteHeader(h); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
			if _, err := cw.Write([]byte(e.Linkname)); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
		case e.Dir:
			if dirs[name] {
				continue
			}
			dirs[name] = true
			mode := e.Mode.Perm()
			if mode == 0 {
				mode = 0o755
			}
			h := &cpio.Header{Name: rel, Mode: cpio.TypeDir | cpio.FileMode(mode), ModTime: mtime}
			if err := cw.WriteHeader(h); err != nil {
				return fmt.Errorf("cpio: %s: %w", name, err)
			}
		default:
			return fmt.Errorf("cpio: entry %s has no contents", name)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("cpio: close: %w", err)
	}
	return nil
}

func writeHostFile(cw *cpio.Writer, rel string, e Entry, mtime time.Time) error {
	f, err := os.Open(e.HostPath)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("cpio: %s is not a regular file", e.HostPath)
	}
	mode := e.Mode.Perm()
	if mode == 0 {
		mode = 0o644
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
	}
	h := &cpio.Header{Name: rel, Mode: cpio.TypeReg | cpio.FileMode(mode), Size: fi.Size(), ModTime: mtime}
	if err := cw.WriteHeader(h); err != nil {
		return fmt.Errorf("cpio: /%s: %w", rel, err)
	}
	n, err := io.Copy(cw, f)
	if err != nil {
		return fmt.Errorf("cpio: copy %s: %w", e.HostPath, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("cpio: %s changed size while copying", e.HostPath)
	}
	return nil
}

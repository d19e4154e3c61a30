package image

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// archive writes a reproducible newc cpio archive: inode numbers count up
// from 1 in write order, every mtime is the same, and the first error sticks.
type archive struct {
	w       *cpio.Writer
	modTime time.Time
	inode   int64
	err     error
}

func newArchive(w io.Writer, modTime time.Time) *archive {
	if modTime.IsZero() {
		modTime = time.Unix(0, 0)
	}
	return &archive{w: cpio.NewWriter(w), modTime: modTime}
}

// header writes h with the archive's inode and mtime.
func (a *archive) header(h *cpio.Header) {
	if a.err != nil {
		return
	}
	a.inode++
	h.Inode = a.inode
	h.ModTime = a.modTime
	if err := a.w.WriteHeader(h); err != nil {
		a.err = fmt.Errorf("write %s: %w", h.Name, err)
	}
}

func (a *archive) dir(name string, perm int64, uid, gid int) {
	a.header(&cpio.Header{Name: name, Mode: cpio.TypeDir | cpio.FileMode(perm), Uid: uid, Guid: gid, Links: 2})
}

func (a *archive) file(name string, perm int64, uid, gid int, r io.Reader, size int64) {
	a.header(&cpio.Header{Name: name, Mode: cpio.TypeReg | cpio.FileMode(perm), Uid: uid, Guid: gid, Links: 1, Size: size})
	a.body(name, r, size)
}

// symlink writes a symbolic link; newc stores the target as the data. The
// permission bits are the tar header's, as linuxkit writes them (Linux
// ignores them).
func (a *archive) symlink(name, target string, perm int64, uid, gid int) {
	a.header(&cpio.Header{Name: name, Mode: cpio.TypeSymlink | cpio.FileMode(perm), Uid: uid, Guid: gid, Links: 1, Size: int64(len(target))})
	a.body(name, strings.NewReader(target), int64(len(target)))
}

func (a *archive) body(name string, r io.Reader, size int64) {
	if a.err != nil {
		return
	}
	n, err := io.Copy(a.w, io.LimitReader(r, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		a.err = fmt.Errorf("write %s: %w", name, err)
	}
}

// close writes the trailer and returns the first error.
func (a *archive) close() error {
	if a.err != nil {
		return a.err
	}
	return a.w.Close()
}

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 1<<20) }

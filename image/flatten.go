package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Whiteout markers of the OCI image layer format (image-spec layer.md,
// "Whiteouts").
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Limits bound what a container image may make the builder do. Zero fields
// take the Default* values.
type Limits struct {
	// MaxBytes caps the total size of the regular files of the flattened
	// root filesystem (the spool file).
	MaxBytes int64
	// MaxEntries caps the number of entries kept in memory (metadata only).
	MaxEntries int
}

// Default limits. The enclave's initramfs lives in enclave memory, so a
// root filesystem larger than a few GiB cannot boot anyway.
const (
	// DefaultMaxBytes is the default cap on the root filesystem's file data: 16 GiB.
	DefaultMaxBytes = 16 << 30
	// DefaultMaxEntries is the default cap on the number of filesystem entries.
	DefaultMaxEntries = 1 << 20
	// NameMaxBytes is the longest entry name accepted (Linux PATH_MAX).
	NameMaxBytes = 4096
)

// ErrLimit is returned (wrapped) when an image exceeds a [Limits] bound.
var ErrLimit = errors.New("image: limit exceeded")

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// entryKind is the kind of a filesystem entry kept in the flattened tree.
type entryKind uint8

const (
	kindDir entryKind = iota + 1
	kindFile
	kindSymlink
	kindHardlink // resolved to kindFile or kindSymlink before emission
	kindFifo
)

// entry is one file of the flattened root filesystem. Regular file data
// lives in the spool file at [off, off+size).
type entry struct {
	name     string // cleaned, relative to the image root, no leading '/'
	kind     entryKind
	perm     int64 // permission bits plus setuid/setgid/sticky
	uid, gid int
	link     string // symlink target, or hard-link target name
	off      int64
	size     int64
	layer    int // index of the layer, counted from the top
}

// tree is a flattened image root filesystem: entry metadata in memory, file
// contents in a spool file.
type tree struct {
	entries map[string]*entry
	spool   *os.File
	spooled int64
}

// cleanName maps a layer entry name onto the image root the way container
// runtimes do: as if joined to "/", so ".." cannot climb above the root.
// It returns "" for the root itself.
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// ancestors returns the strict ancestors of a cleaned name, outermost first.
func ancestors(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			out = append(out, name[:i])
		}
	}
	return out
}

// flatten applies the image's layers, top layer first, into a tree whose
// file data is spooled to a temporary file in tmpDir. The caller must call
// tree.close.
func flatten(ctx context.Context, img v1.Image, tmpDir string, lim Limits, log *slog.Logger) (*tree, error) {
	lim = lim.withDefaults()
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("read image layers: %w", err)
	}
	spool, err := os.CreateTemp(tmpDir, "nitrovm-rootfs-*")
	if err != nil {
		return nil, fmt.Errorf("create spool file: %w", err)
	}
	// The spool is only reached through the open file.
	if err := os.Remove(spool.Name()); err != nil {
		spool.Close()
		return nil, fmt.Errorf("unlink spool file: %w", err)
	}
	t := &tree{entries: make(map[string]*entry), spool: spool}
	whiteout := make(map[string]bool) // names deleted by upper layers
	opaque := make(map[string]bool)   // directories made opaque by upper layers
	for i := len(layers) - 1; i >= 0; i-- {
		top := len(layers) - 1 - i
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.close()
			return nil, fmt.Errorf("open layer %d: %w", i, err)
		}
		wh, op, err := t.applyLayer(ctx, rc, top, whiteout, opaque, lim, log)
		rc.Close()
		if err != nil {
			t.close()
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		for n := range wh {
			whiteout[n] = true
		}
		for n := range op {
			opaque[n] = true
		}
	}
	if err := t.applyDockerExport(); err != nil {
		t.close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := t.finish(log); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// applyLayer adds the entries of one layer (a tar stream) that upper layers
// have not replaced or deleted. It returns the whiteouts and opaque
// directories this layer declares, which apply to the layers below it.
func (t *tree) applyLayer(ctx context.Context, r io.Reader, layer int, whiteout, opaque map[string]bool, lim Limits, log *slog.Logger) (wh, op map[string]bool, err error) {
	wh = make(map[string]bool)
	op = make(map[string]bool)
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return wh, op, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read tar: %w", err)
		}
		if len(hdr.Name) > NameMaxBytes {
			return nil, nil, fmt.Errorf("entry name of %d bytes: %w", len(hdr.Name), ErrLimit)
		}
		name := cleanName(hdr.Name)
		if name == "" {
			continue // the root directory itself
		}
		base, dir := path.Base(name), path.Dir(name)
		if dir == "." {
			dir = ""
		}
		if base == whiteoutOpaque {
			op[dir] = true
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			wh[path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))] = true
			continue
		}
		if t.hidden(name, layer, whiteout, opaque) {
			continue
		}
		e := &entry{
			name:  name,
			perm:  hdr.Mode & 0o7777,
			uid:   hdr.Uid,
			gid:   hdr.Gid,
			layer: layer,
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			e.kind = kindDir
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA appears in old layers.
			e.kind = kindFile
			if hdr.Size < 0 || t.spooled+hdr.Size > lim.MaxBytes {
				return nil, nil, fmt.Errorf("file %q of %d bytes makes the root filesystem exceed %d bytes: %w", name, hdr.Size, lim.MaxBytes, ErrLimit)
			}
			e.off, e.size = t.spooled, hdr.Size
			n, err := io.Copy(io.NewOffsetWriter(t.spool, e.off), io.LimitReader(tr, hdr.Size))
			if err != nil {
				return nil, nil, fmt.Errorf("spool %q: %w", name, err)
			}
			if n != hdr.Size {
				return nil, nil, fmt.Errorf("spool %q: %w", name, io.ErrUnexpectedEOF)
			}
			t.spooled += n
		case tar.TypeSymlink:
			e.kind = kindSymlink
			e.link = hdr.Linkname
			if e.link == "" || len(e.link) > NameMaxBytes {
				log.Debug("skipping symlink with bad target", "name", name)
				continue
			}
		case tar.TypeLink:
			e.kind = kindHardlink
			e.link = cleanName(hdr.Linkname)
		case tar.TypeFifo:
			e.kind = kindFifo
		default:
			// Device nodes (the enclave's /dev is a devtmpfs), sockets and
			// anything exotic are not part of the ramdisk.
			log.Debug("skipping special file", "name", name, "type", string(hdr.Typeflag))
			continue
		}
		if _, dup := t.entries[name]; !dup && len(t.entries) >= lim.MaxEntries {
			return nil, nil, fmt.Errorf("more than %d entries: %w", lim.MaxEntries, ErrLimit)
		}
		t.entries[name] = e
	}
}

// hidden reports whether a lower layer's entry name is replaced or deleted
// by the layers above layer.
func (t *tree) hidden(name string, layer int, whiteout, opaque map[string]bool) bool {
	if e, ok := t.entries[name]; ok && e.layer < layer {
		return true // an upper layer has it
	}
	if whiteout[name] || opaque[""] {
		return true
	}
	for _, a := range ancestors(name) {
		if whiteout[a] || opaque[a] {
			return true
		}
		if e, ok := t.entries[a]; ok && e.layer < layer && e.kind != kindDir {
			return true // an upper layer replaced the directory with a non-directory
		}
	}
	return false
}

// finish adds missing parent directories, drops entries whose parent is
// not a directory, and turns hard links into symlinks (see linkHardLinks).
func (t *tree) finish(log *slog.Logger) error {
	for _, name := range t.names() {
		for _, a := range ancestors(name) {
			if _, ok := t.entries[a]; !ok {
				t.entries[a] = &entry{name: a, kind: kindDir, perm: 0o755}
			}
		}
	}
	for _, name := range t.names() {
		for _, a := range ancestors(name) {
			if p, ok := t.entries[a]; !ok || p.kind != kindDir {
				log.Debug("dropping entry whose parent is not a directory", "name", name, "parent", a)
				delete(t.entries, name)
				break
			}
		}
	}
	t.linkHardLinks(log)
	return nil
}

// linkHardLinks writes hard links as linuxkit's initrd writer does, which
// is how nitro-cli's EIFs hold them (linuxkit src/cmd/linuxkit/initrd/initrd.go,
// typeconv: a tar hard link becomes a symlink whose target is the link's
// target relative to the link's directory; cpio hard links would still
// duplicate the data). docker export, which feeds linuxkit, writes the
// first name of an inode in walk order as the file and every later name as
// a hard link to it; so here the first name of each group in walk order
// keeps the data and the others become relative symlinks to it. All names
// carry the inode's mode and owner, as in docker export's headers.
//
// A hard link whose target is missing, not a regular file, or replaced by
// an upper layer (the link would still see the lower layer's data, which
// is not kept) is dropped.
func (t *tree) linkHardLinks(log *slog.Logger) {
	groups := make(map[*entry][]*entry) // regular file -> its hard links
	for _, name := range t.names() {
		e := t.entries[name]
		if e.kind != kindHardlink {
			continue
		}
		target, ok := t.entries[e.link]
		for hops := 0; ok && target.kind == kindHardlink && hops < len(t.entries); hops++ {
			target, ok = t.entries[target.link]
		}
		if !ok || target.kind != kindFile || target.layer != e.layer {
			log.Debug("dropping hard link without a regular target in its layer", "name", name, "target", e.link)
			delete(t.entries, name)
			continue
		}
		groups[target] = append(groups[target], e)
	}
	for file, links := range groups {
		first := file
		for _, l := range links {
			if walkLess(l.name, first.name) {
				first = l
			}
		}
		off, size := file.off, file.size
		for _, e := range append(links, file) {
			e.perm, e.uid, e.gid = file.perm, file.uid, file.gid
			if e == first {
				e.kind, e.off, e.size, e.link = kindFile, off, size, ""
			} else {
				e.kind, e.off, e.size, e.link = kindSymlink, 0, 0, relPath(path.Dir(e.name), first.name)
			}
		}
	}
}

// relPath returns target (a cleaned name relative to the image root) as a
// path relative to directory dir ("." for the root), as filepath.Rel would.
func relPath(dir, target string) string {
	if dir == "." {
		dir = ""
	}
	var d, tg []string
	if dir != "" {
		d = strings.Split(dir, "/")
	}
	tg = strings.Split(target, "/")
	i := 0
	for i < len(d) && i < len(tg)-1 && d[i] == tg[i] {
		i++
	}
	up := strings.Repeat("../", len(d)-i)
	return up + strings.Join(tg[i:], "/")
}

// walkLess orders names as a depth-first walk that visits each directory's
// entries in byte order (Go's filepath.WalkDir, which docker export uses):
// bytewise, except that '/' sorts before every other byte, so that "a/b"
// comes before "a-c".
func walkLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return true
		}
		if cb == '/' {
			return false
		}
		return ca < cb
	}
	return len(a) < len(b)
}

// walkNames returns the tree's names in walk order (see walkLess); every
// directory comes before its contents.
func (t *tree) walkNames() []string {
	out := t.names()
	sort.Slice(out, func(i, j int) bool { return walkLess(out[i], out[j]) })
	return out
}

// names returns the tree's names sorted bytewise, so that every directory
// comes before its contents.
func (t *tree) names() []string {
	out := make([]string, 0, len(t.entries))
	for n := range t.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// close releases the spool file.
func (t *tree) close() error {
	return t.spool.Close()
}

package image

import "strings"

// What nitro-cli's build adds to and removes from an image's files. nitro-cli
// hands the image to linuxkit, which runs `docker create` and `docker
// export` on it: the export holds the image's files with Docker's init
// layer on top (moby daemon/initlayer/setup_unix.go: the directories
// /dev/pts, /dev/shm, /proc, /sys; empty files of mode 0755 /.dockerenv,
// /etc/resolv.conf, /etc/hosts, /etc/hostname, /dev/console; the symlink
// /etc/mtab -> /proc/mounts). linuxkit then drops some of those names and
// rewrites others (linuxkit src/cmd/linuxkit/moby/image.go, exclude and
// replace).

// exportDirs are the init layer's directories that survive linuxkit's
// filter, with their parents; the init layer creates them (and their
// parents) 0755 owned by root, and as it is the top layer its directories
// are what the merged view shows.
var exportDirs = [...]string{"dev", "etc", "proc", "sys"}

// exportExcluded are the names linuxkit drops from the export.
var exportExcluded = [...]string{".dockerenv", "Dockerfile", "dev/console", "dev/pts", "dev/shm", "etc/hostname"}

// exportReplaced are the files linuxkit writes in place of the init
// layer's empty ones (which have mode 0755).
var exportReplaced = [...]struct{ name, body string }{
	{"etc/hosts", "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"},
	{"etc/resolv.conf", "\n# no resolv.conf configured\n"},
}

// exportSymlinks are the init layer's symlinks.
var exportSymlinks = [...]struct{ name, target string }{{"etc/mtab", "/proc/mounts"}}

// applyDockerExport makes the tree what docker export and linuxkit's
// filter make of the image. File bodies are appended to the spool. The
// entries get layer -1, above the image's layers, so that no hard link of
// the image resolves to them.
func (t *tree) applyDockerExport() error {
	for _, d := range exportDirs {
		t.put(&entry{name: d, kind: kindDir, perm: 0o755, layer: -1})
	}
	for _, n := range exportExcluded {
		t.remove(n)
	}
	for _, r := range exportReplaced {
		off := t.spooled
		n, err := t.spool.WriteAt([]byte(r.body), off)
		if err != nil {
			return err
		}
		t.spooled += int64(n)
		t.put(&entry{name: r.name, kind: kindFile, perm: 0o755, off: off, size: int64(n), layer: -1})
	}
	for _, s := range exportSymlinks {
		t.put(&entry{name: s.name, kind: kindSymlink, perm: 0o777, link: s.target, layer: -1})
	}
	return nil
}

// put sets name to e, replacing what was there. A directory replacing a
// directory (or a parent directory the layers imply without an entry)
// keeps its contents; anything else replaces the whole subtree.
func (t *tree) put(e *entry) {
	if old, ok := t.entries[e.name]; e.kind != kindDir || (ok && old.kind != kindDir) {
		t.remove(e.name)
	}
	t.entries[e.name] = e
}

// remove deletes name and everything below it.
func (t *tree) remove(name string) {
	delete(t.entries, name)
	prefix := name + "/"
	for n := range t.entries {
		if strings.HasPrefix(n, prefix) {
			delete(t.entries, n)
		}
	}
}

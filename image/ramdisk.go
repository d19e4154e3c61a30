package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layout of the ramdisks, from aws-nitro-enclaves-cli
// enclave_build/src/yaml_generator.rs and aws-nitro-enclaves-sdk-bootstrap
// init/init.c.
const (
	// RootfsDir is the directory of the user ramdisk holding the image's
	// root filesystem; the init chroots into it.
	RootfsDir = "rootfs"
	// CmdFile is the user ramdisk file with the command, one argument a line.
	CmdFile = "cmd"
	// EnvFile is the user ramdisk file with the environment, one VAR=value a line.
	EnvFile = "env"
	// InitFile is the boot ramdisk's init program.
	InitFile = "init"
	// NSMModuleFile is the boot ramdisk's NSM driver module (AWS blobs only).
	NSMModuleFile = "nsm.ko"
)

// mountDirs are the directories nitro-cli's customer ramdisk template adds
// under rootfs/ after the image, in its order (yaml_generator.rs,
// get_customer_ramfs): the init's mount points.
var mountDirs = [...]string{"dev", "run", "sys", "var", "proc", "tmp"}

// BootOptions describes the boot ramdisk (rd0).
type BootOptions struct {
	// Init is the /init executable.
	Init []byte
	// NSMModule is the nsm.ko kernel module; nil leaves it out (kernels with
	// the NSM driver built in, as nitrovm's, need none).
	NSMModule []byte
	// ModTime is the mtime of every entry; the zero time writes 0.
	ModTime time.Time
}

// WriteBootRamdisk writes the boot ramdisk as nitro-cli builds it: `dev/`,
// `init` and, when given, `nsm.ko`, all mode 0755 and owned by root.
func WriteBootRamdisk(w io.Writer, o BootOptions) error {
	if len(o.Init) == 0 {
		return errors.New("image: boot ramdisk: no init")
	}
	cw := newArchive(w, o.ModTime)
	cw.dir("dev", 0o755, 0, 0)
	cw.file(InitFile, 0o755, 0, 0, bytes.NewReader(o.Init), int64(len(o.Init)))
	if o.NSMModule != nil {
		cw.file(NSMModuleFile, 0o755, 0, 0, bytes.NewReader(o.NSMModule), int64(len(o.NSMModule)))
	}
	if err := cw.close(); err != nil {
		return fmt.Errorf("image: boot ramdisk: %w", err)
	}
	return nil
}

// UserOptions describes how the user ramdisk (rd1) is built.
type UserOptions struct {
	// ModTime is the mtime of every entry; the zero time writes 0.
	ModTime time.Time
	// TempDir holds the spool file of the root filesystem; "" means os.TempDir.
	TempDir string
	// Limits bounds the image; zero fields take the defaults.
	Limits Limits
	// Logger receives debug lines about skipped entries; nil discards them.
	Logger *slog.Logger
}

// WriteUserRamdisk flattens img's layers and writes the user ramdisk as
// nitro-cli's linuxkit step lays it out: `rootfs/` with the image's files
// as docker export shows them (see applyDockerExport; hard links as
// relative symlinks), the mount points `rootfs/{dev,run,sys,var,proc,tmp}`,
// then the files `cmd` and `env`. Entries are in walk order, mtimes fixed,
// owners and permissions those of the image.
func WriteUserRamdisk(ctx context.Context, w io.Writer, img v1.Image, o UserOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cmd, env, err := Config(img)
	if err != nil {
		return err
	}
	t, err := flatten(ctx, img, o.TempDir, o.Limits, log)
	if err != nil {
		return fmt.Errorf("image: flatten root filesystem: %w", err)
	}
	defer t.close()
	for _, d := range mountDirs {
		if e, ok := t.entries[d]; ok && e.kind != kindDir {
			t.remove(d) // a mount point must be a directory
		}
	}
	// The order is linuxkit's (moby build: the image, then the template's
	// files): the "rootfs/" prefix directory, the image's files in docker
	// export's walk order, then the template's files, whose parent
	// "rootfs" linuxkit writes again. The kernel applies a repeated
	// directory's mode and owner again, so /tmp ends up 0755 as on Nitro.
	cw := newArchive(w, o.ModTime)
	cw.dir(RootfsDir, 0o755, 0, 0)
	for _, n := range t.walkNames() {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := t.entries[n]
		name := RootfsDir + "/" + n
		switch e.kind {
		case kindDir:
			cw.dir(name, e.perm, e.uid, e.gid)
		case kindFile:
			cw.file(name, e.perm, e.uid, e.gid, io.NewSectionReader(t.spool, e.off, e.size), e.size)
		case kindSymlink:
			cw.symlink(name, e.link, e.perm, e.uid, e.gid)
		case kindFifo:
			cw.header(&cpio.Header{Name: name, Mode: cpio.TypeFifo | cpio.FileMode(e.perm), Uid: e.uid, Guid: e.gid, Links: 1})
		}
	}
	cw.dir(RootfsDir, 0o755, 0, 0)
	for _, d := range mountDirs {
		cw.dir(RootfsDir+"/"+d, 0o755, 0, 0)
	}
	cmdText, envText := lines(cmd), lines(env)
	cw.file(CmdFile, 0o644, 0, 0, strings.NewReader(cmdText), int64(len(cmdText)))
	cw.file(EnvFile, 0o644, 0, 0, strings.NewReader(envText), int64(len(envText)))
	if err := cw.close(); err != nil {
		return fmt.Errorf("image: user ramdisk: %w", err)
	}
	return nil
}

// Config returns the command and environment the enclave runs, as nitro-cli
// takes them from the image config (enclave_build/src/docker.rs,
// extract_image): CMD when the image has one, else ENTRYPOINT (nitro-cli
// does not join them as Docker does), and ENV.
func Config(img v1.Image) (cmd, env []string, err error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("image: read config: %w", err)
	}
	switch {
	case cf.Config.Cmd != nil:
		cmd = cf.Config.Cmd
	case cf.Config.Entrypoint != nil:
		cmd = cf.Config.Entrypoint
	}
	if len(cmd) == 0 {
		return nil, nil, errors.New("image: the image has neither CMD nor ENTRYPOINT")
	}
	env = cf.Config.Env
	for _, s := range append(append([]string(nil), cmd...), env...) {
		if strings.ContainsAny(s, "\n\x00") {
			return nil, nil, fmt.Errorf("image: CMD/ENV entry %q has a newline or NUL, which the cmd/env files cannot hold", s)
		}
	}
	return cmd, env, nil
}

// lines joins ss one per line, each terminated by a newline.
func lines(ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// Ramdisks is a pair of ramdisk files built by [Build], in a temporary
// directory that Close removes.
type Ramdisks struct {
	// Boot is the path of the boot ramdisk (rd0).
	Boot string
	// User is the path of the user ramdisk (rd1).
	User string
	dir  string
}

// Paths returns the ramdisk paths in EIF order.
func (r *Ramdisks) Paths() []string { return []string{r.Boot, r.User} }

// Close removes the ramdisk files.
func (r *Ramdisks) Close() error { return os.RemoveAll(r.dir) }

// Build writes both ramdisks of img to files in a new temporary directory
// under user.TempDir.
func Build(ctx context.Context, img v1.Image, boot BootOptions, user UserOptions) (*Ramdisks, error) {
	dir, err := os.MkdirTemp(user.TempDir, "nitrovm-ramdisks-*")
	if err != nil {
		return nil, fmt.Errorf("image: create temporary directory: %w", err)
	}
	r := &Ramdisks{Boot: filepath.Join(dir, "bootstrap-initrd.img"), User: filepath.Join(dir, "customer-initrd.img"), dir: dir}
	if err := writeFile(r.Boot, func(w io.Writer) error { return WriteBootRamdisk(w, boot) }); err != nil {
		r.Close()
		return nil, err
	}
	if err := writeFile(r.User, func(w io.Writer) error { return WriteUserRamdisk(ctx, w, img, user) }); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func writeFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	bw := newBufWriter(f)
	if err := write(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("image: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image: write %s: %w", name, err)
	}
	return nil
}

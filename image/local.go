package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// LocalStore is a container engine's local image store, reached through
// its command-line tool (no daemon API library): `<cli> image inspect`
// tells whether it has an image, `<cli> save` exports it.
type LocalStore struct {
	// Name is "docker" or "podman".
	Name string
	// Path is the tool's executable.
	Path string
}

// LocalStoreNames are the tools FindLocalStores looks for, in order.
var localStoreNames = [...]string{"docker", "podman"}

// FindLocalStores returns the Docker and Podman tools found in the
// directories of pathList (a $PATH value).
func FindLocalStores(pathList string) []LocalStore {
	var out []LocalStore
	for _, n := range localStoreNames {
		for _, dir := range filepath.SplitList(pathList) {
			if dir == "" {
				continue
			}
			p := filepath.Join(dir, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
				out = append(out, LocalStore{Name: n, Path: p})
				break
			}
		}
	}
	return out
}

// Load exports ref from the store when the store has it; ok is false
// (with a nil error) when the store does not have it or its daemon is not
// running. The image is saved under tmpDir, which must outlive its use.
func (s LocalStore) Load(ctx context.Context, ref, tmpDir string) (src *Source, ok bool, err error) {
	var out bytes.Buffer
	inspect := exec.CommandContext(ctx, s.Path, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	inspect.Stdout = &out
	if inspect.Run() != nil {
		return nil, false, nil // not there, or no daemon: try the next source
	}
	var digests []string
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &digests); err != nil {
		return nil, false, fmt.Errorf("%s image inspect %s: unexpected output %q", s.Name, ref, out.String())
	}
	dir, err := os.MkdirTemp(tmpDir, "nitrovm-"+s.Name+"-save-*")
	if err != nil {
		return nil, false, err
	}
	file := filepath.Join(dir, "image.tar")
	var stderr bytes.Buffer
	save := exec.CommandContext(ctx, s.Path, "save", "-o", file, ref)
	save.Stderr = &stderr
	if err := save.Run(); err != nil {
		return nil, false, fmt.Errorf("%s save %s: %v: %s", s.Name, ref, err, strings.TrimSpace(stderr.String()))
	}
	img, _, err := LoadTagged(file, "", dir)
	if err != nil {
		return nil, false, err
	}
	for i, d := range digests {
		digests[i] = familiarName(d)
	}
	return &Source{Image: img, RepoTags: []string{repoTag(ref)}, RepoDigests: digests, From: s.Name}, true, nil
}

// repoTag is ref as docker lists it among RepoTags: "alpine" is
// "alpine:latest".
func repoTag(ref string) string {
	if t, err := name.NewTag(ref); err == nil {
		return familiarName(t.Name())
	}
	return ref
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nitrovm/nitrovm/image"
)

// pullFlags are the flags saying where build-enclave gets its image.
type pullFlags struct {
	pull, platform string
	insecure       bool
	quiet          bool
}

func addPullFlags(fl *pflag.FlagSet, f *pullFlags) {
	fl.StringVar(&f.pull, "pull", string(image.PullMissing), "when to pull --docker-uri: always, missing (use a local Docker/Podman image or nitrovm's cache if there is one) or never")
	fl.StringVar(&f.platform, "platform", "", "platform to take from a multi-platform image (default "+image.DefaultPlatform+")")
	fl.BoolVar(&f.insecure, "insecure-registry", false, "allow plain HTTP to the registry (always allowed for localhost and 127.0.0.1)")
	fl.BoolVar(&f.quiet, "quiet", false, "no download progress")
}

// cacheDir is ${NITROVM_CACHE:-$HOME/.cache/nitrovm}; what names what
// needs it (e.g. "no image cache directory") in the error when neither is set.
func cacheDir(env Env, what string) (string, error) {
	if cache := env.getenv("NITROVM_CACHE"); cache != "" {
		return cache, nil
	}
	home := env.getenv("HOME")
	if home == "" {
		return "", errors.New(what + ": set NITROVM_CACHE or HOME")
	}
	return filepath.Join(home, ".cache", "nitrovm"), nil
}

// imageCacheDir is ${NITROVM_CACHE:-$HOME/.cache/nitrovm}/images.
func imageCacheDir(env Env) (string, error) {
	cache, err := cacheDir(env, "no image cache directory")
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "images"), nil
}

// imageSource is the image build-enclave builds and the reference it goes
// by in the EIF metadata.
type imageSource struct {
	*image.Source
	ref string
}

// resolveImageSource finds the image of a build: --image-tar, or
// --docker-uri naming a local file, or --docker-uri pulled by the pull
// policy. tmp receives unpacked and saved images.
func resolveImageSource(ctx context.Context, env Env, f buildEnclaveFlags, tmp string) (*imageSource, error) {
	path, ref := f.imageTar, f.dockerURI
	if path == "" && fileOrDirExists(ref) {
		path, ref = ref, ""
	}
	if path != "" {
		src, err := image.LoadSource(path, ref, tmp)
		if err != nil {
			return nil, nitroErr(eDockerImagePull, err)
		}
		// The image's reference, as nitro-cli has it from --docker-uri:
		// else the archive's own tag, else the file's base name.
		if ref == "" && len(src.RepoTags) > 0 {
			ref = src.RepoTags[0]
		}
		if ref == "" {
			ref = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
		return &imageSource{Source: src, ref: ref}, nil
	}
	policy := image.PullPolicy(f.pullFlags.pull)
	switch policy {
	case image.PullAlways, image.PullMissing, image.PullNever:
	default:
		return nil, nitroErr(eInvalidArgument, fmt.Errorf("--pull %q: want always, missing or never", f.pullFlags.pull))
	}
	dir, err := imageCacheDir(env)
	if err != nil {
		return nil, nitroErr(eDockerImagePull, err)
	}
	prog := newPullProgress(env.Stderr, f.pullFlags.quiet)
	src, err := image.Resolve(ctx, ref, image.PullOptions{
		Cache:    &image.Cache{Dir: dir},
		Policy:   policy,
		Platform: f.pullFlags.platform,
		Insecure: f.pullFlags.insecure,
		Stores:   image.FindLocalStores(env.getenv("PATH")),
		TempDir:  tmp,
		Progress: prog,
	})
	prog.wait()
	if err != nil {
		var pe *image.PullError
		if errors.As(err, &pe) && pe.Kind == image.KindBadReference {
			return nil, nitroErr(eInvalidArgument, err)
		}
		return nil, nitroErr(eDockerImagePull, err)
	}
	return &imageSource{Source: src, ref: ref}, nil
}

func fileOrDirExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

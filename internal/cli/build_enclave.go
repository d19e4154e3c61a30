package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/ca"
	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/image"
)

// DefaultEnclaveCmdline is the kernel command line of AWS's enclave blobs
// (aws-nitro-enclaves-sdk-bootstrap kernel/cmdline/x86_64.cmdline).
const DefaultEnclaveCmdline = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"

// buildEnclaveFlags are the flags of build-enclave.
type buildEnclaveFlags struct {
	dockerURI, dockerDir, imageTar, output string
	name, version, metadata                string
	cert, key                              string
	kernel, kernelConfig, cmdline, init    string
	blobs                                  string
	pullFlags                              pullFlags
	trustLocalCA                           bool
}

// newBuildEnclaveCmd returns the "build-enclave" subcommand: a container
// image to an EIF, as nitro-cli build-enclave, without a Docker daemon.
func newBuildEnclaveCmd(env Env) *cobra.Command {
	var f buildEnclaveFlags
	cmd := &cobra.Command{
		Use:   "build-enclave",
		Short: "Build an EIF from a container image (nitro-cli build-enclave)",
		Long: `Build an Enclave Image File from a container image, as nitro-cli build-enclave
does, without a Docker daemon. --docker-uri REF pulls REF from its registry
(Docker Hub short names as docker resolves them; credentials from Docker's
config.json), unless a local Docker or Podman has it (--pull); layers are
cached by digest under $NITROVM_CACHE/images ('nitrovm images prune' empties
it). --image-tar reads a 'docker save' archive, an OCI image layout directory
or a tar of one (--docker-uri then picks the image when there are several;
without it the image is named after the archive's own tag, else the file's
name). The boot ramdisk holds nitrovm's own /init (or the
init of --blobs); the kernel is --kernel, the blobs' bzImage, or the guest
kernel built by scripts/kernel/build-guest.sh in the cache. The output is
reproducible: the same inputs give the same bytes (SOURCE_DATE_EPOCH sets the
timestamps) unless the EIF is signed.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runBuildEnclave(c.Context(), env, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dockerURI, "docker-uri", "", "image reference to pull (or a local docker save tar or OCI layout); with --image-tar, selects the image inside it")
	fl.StringVar(&f.dockerDir, "docker-dir", "", "Dockerfile directory (not supported: needs a Docker daemon)")
	fl.StringVar(&f.imageTar, "image-tar", "", "docker save archive, OCI layout directory, or OCI layout tar")
	fl.StringVar(&f.output, "output-file", "", "where to write the EIF")
	fl.StringVar(&f.name, "name", "", "image name in the EIF metadata (default: the image reference without tag)")
	fl.StringVar(&f.version, "version", "", "image version in the EIF metadata (default: the image config digest)")
	fl.StringVar(&f.metadata, "metadata", "", "JSON file of custom metadata")
	fl.StringVar(&f.cert, "signing-certificate", "", "PEM certificate to sign the EIF with (PCR8)")
	fl.StringVar(&f.key, "private-key", "", "PEM EC private key of --signing-certificate")
	fl.StringVar(&f.kernel, "kernel", "", "enclave kernel (bzImage); default: --blobs' bzImage or the cached nitrovm guest kernel")
	fl.StringVar(&f.kernelConfig, "kernel-config", "", "kernel .config for the metadata (default: beside the kernel)")
	fl.StringVar(&f.cmdline, "cmdline", "", "kernel command line (default: --blobs' cmdline or AWS's enclave cmdline)")
	fl.StringVar(&f.init, "init", "", "enclave /init executable (default: the one built into nitrovm, or --blobs' init)")
	fl.StringVar(&f.blobs, "blobs", "", "AWS blobs directory (bzImage, bzImage.config, cmdline, init, nsm.ko); default $NITRO_CLI_BLOBS")
	addPullFlags(fl, &f.pullFlags)
	fl.BoolVar(&f.trustLocalCA, "trust-local-ca", false, "append nitrovm's local CA root to the image's CA bundles (for TLS to 'kms serve'); changes PCR0 and PCR2")
	return cmd
}

// enclaveInputs are the resolved kernel, cmdline, init and module.
type enclaveInputs struct {
	kernel, kernelConfig string
	cmdline              string
	init, nsm            []byte
}

func runBuildEnclave(ctx context.Context, env Env, f buildEnclaveFlags) error {
	log := env.logger()
	if f.output == "" {
		return nitroErr(eMissingArgument, errors.New("--output-file is required"))
	}
	if f.dockerDir != "" {
		return nitroErr(eDockerImageBuild, errors.New("--docker-dir needs a Docker daemon to build the image, which nitrovm does not use; build the image elsewhere, export it with 'docker save', and pass --image-tar"))
	}
	if f.imageTar == "" && f.dockerURI == "" {
		return nitroErr(eMissingArgument, errors.New("give --docker-uri REF (an image to pull) or --image-tar FILE (docker save or OCI layout)"))
	}
	if (f.cert == "") != (f.key == "") {
		return nitroErr(eConflictingArgument, errors.New("--signing-certificate and --private-key go together"))
	}
	in, err := resolveEnclaveInputs(env, f)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "nitrovm-build-*")
	if err != nil {
		return nitroErr(eFileOperation, fmt.Errorf("create temporary directory: %w", err))
	}
	defer os.RemoveAll(tmp)
	src, err := resolveImageSource(ctx, env, f, tmp)
	if err != nil {
		return err
	}
	if f.trustLocalCA {
		if src.Image, err = trustLocalCA(env, src.Image); err != nil {
			return err
		}
	}
	fmt.Fprintln(env.Stderr, "Start building the Enclave Image...")

	epoch, err := sourceDateEpoch(env)
	if err != nil {
		return nitroErr(eInvalidArgument, err)
	}
	rd, err := image.Build(ctx, src.Image,
		image.BootOptions{Init: in.init, NSMModule: in.nsm, ModTime: epoch},
		image.UserOptions{ModTime: epoch, TempDir: tmp, Logger: log})
	if err != nil {
		return nitroErr(eEIFBuilding, err)
	}
	defer rd.Close()

	opts, closeAll, err := enclaveBuildOptions(env, f, in, src, epoch, rd)
	defer closeAll()
	if err != nil {
		return err
	}
	m, err := writeEIF(f.output, opts)
	if err != nil {
		return nitroErr(eEIFBuilding, err)
	}
	fmt.Fprintln(env.Stderr, "Enclave Image successfully created.")
	return writeJSON(env.Stdout, struct {
		Measurements *eif.Measurements `json:"Measurements"`
	}{m})
}

// resolveEnclaveInputs picks the kernel, cmdline and init: explicit flags
// first, then the blobs directory, then nitrovm's defaults.
func resolveEnclaveInputs(env Env, f buildEnclaveFlags) (*enclaveInputs, error) {
	in := &enclaveInputs{kernel: f.kernel, kernelConfig: f.kernelConfig, cmdline: f.cmdline}
	blobs := f.blobs
	if blobs == "" {
		blobs = env.getenv("NITRO_CLI_BLOBS")
	}
	if blobs != "" {
		if in.kernel == "" {
			in.kernel = filepath.Join(blobs, "bzImage")
			if in.kernelConfig == "" {
				in.kernelConfig = filepath.Join(blobs, "bzImage.config")
			}
		}
		if in.cmdline == "" {
			b, err := os.ReadFile(filepath.Join(blobs, "cmdline"))
			if err != nil {
				return nil, nitroErr(eFileOperation, fmt.Errorf("read kernel command line: %w", err))
			}
			in.cmdline = strings.TrimSpace(string(b))
		}
		if f.init == "" {
			b, err := os.ReadFile(filepath.Join(blobs, "init"))
			if err != nil {
				return nil, nitroErr(eFileOperation, fmt.Errorf("read blobs init: %w", err))
			}
			in.init = b
			// AWS's kernel loads the NSM driver as a module; ours has it built in.
			if in.nsm, err = os.ReadFile(filepath.Join(blobs, "nsm.ko")); err != nil {
				return nil, nitroErr(eFileOperation, fmt.Errorf("read blobs nsm.ko: %w", err))
			}
		}
	}
	if in.cmdline == "" {
		in.cmdline = DefaultEnclaveCmdline
	}
	if f.init != "" {
		b, err := os.ReadFile(f.init)
		if err != nil {
			return nil, nitroErr(eFileOperation, fmt.Errorf("read init: %w", err))
		}
		in.init = b
	}
	if in.init == nil {
		b, err := image.DefaultInit()
		if err != nil {
			return nil, nitroErr(eEIFBuilding, err)
		}
		in.init = b
	}
	if in.kernel == "" {
		k, err := cachedGuestKernel(env)
		if err != nil {
			return nil, nitroErr(eBlobsPathNotSet, err)
		}
		in.kernel = k
	}
	if in.kernelConfig == "" {
		if c := filepath.Join(filepath.Dir(in.kernel), "config"); fileExists(c) {
			in.kernelConfig = c
		}
	}
	return in, nil
}

// cachedGuestKernel returns the newest guest kernel built by
// scripts/kernel/build-guest.sh: ${NITROVM_CACHE:-$HOME/.cache/nitrovm}/kernel/guest-*/bzImage.
func cachedGuestKernel(env Env) (string, error) {
	cache, err := cacheDir(env, "no kernel: pass --kernel or --blobs")
	if err != nil {
		return "", err
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "kernel", "guest-*", "bzImage"))
	if len(matches) == 0 {
		return "", fmt.Errorf("no kernel: none cached under %s/kernel (run scripts/kernel/build-guest.sh), and no --kernel or --blobs", cache)
	}
	sort.Slice(matches, func(i, j int) bool { return modTime(matches[i]).After(modTime(matches[j])) })
	return matches[0], nil
}

func modTime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// sourceDateEpoch returns SOURCE_DATE_EPOCH as a time, or the zero time
// (written as 0) when it is unset.
func sourceDateEpoch(env Env) (time.Time, error) {
	s := env.getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// enclaveDockerInfo is what nitrovm records as DockerInfo (nitro-cli puts
// `docker inspect` output there): the fields of it an image file or a
// registry has.
type enclaveDockerInfo struct {
	ID           string    `json:"Id"`
	RepoTags     []string  `json:"RepoTags"`
	RepoDigests  []string  `json:"RepoDigests"`
	Created      string    `json:"Created,omitempty"`
	Architecture string    `json:"Architecture"`
	Os           string    `json:"Os"`
	Config       v1.Config `json:"Config"`
}

// enclaveBuildOptions assembles eif.BuildOptions; the returned func closes
// the opened files.
func enclaveBuildOptions(env Env, f buildEnclaveFlags, in *enclaveInputs, src *imageSource, epoch time.Time, rd *image.Ramdisks) (eif.BuildOptions, func(), error) {
	img, ref := src.Image, src.ref
	var files []*os.File
	closeAll := func() {
		for _, fh := range files {
			fh.Close()
		}
	}
	open := func(p, what string, code int) (*os.File, error) {
		fh, err := os.Open(p)
		if err != nil {
			return nil, nitroErr(code, fmt.Errorf("open %s: %w", what, err))
		}
		files = append(files, fh)
		return fh, nil
	}
	blob := func(p, what string) (eif.Blob, error) {
		fh, err := open(p, what, eFileOperation)
		if err != nil {
			return nil, err
		}
		fi, err := fh.Stat()
		if err != nil {
			return nil, nitroErr(eFileOperation, fmt.Errorf("stat %s: %w", what, err))
		}
		return io.NewSectionReader(fh, 0, fi.Size()), nil
	}
	var opts eif.BuildOptions
	var err error
	if opts.Kernel, err = blob(in.kernel, "kernel"); err != nil {
		return opts, closeAll, err
	}
	if in.kernelConfig != "" {
		kc, err := open(in.kernelConfig, "kernel config", eFileOperation)
		if err != nil {
			return opts, closeAll, err
		}
		opts.KernelConfig = kc
	}
	for i, p := range rd.Paths() {
		b, err := blob(p, fmt.Sprintf("ramdisk %d", i))
		if err != nil {
			return opts, closeAll, err
		}
		opts.Ramdisks = append(opts.Ramdisks, b)
	}
	opts.Cmdline = in.cmdline

	cf, err := img.ConfigFile()
	if err != nil {
		return opts, closeAll, nitroErr(eEIFBuilding, fmt.Errorf("read image config: %w", err))
	}
	digest, err := img.ConfigName()
	if err != nil {
		return opts, closeAll, nitroErr(eEIFBuilding, fmt.Errorf("image config digest: %w", err))
	}
	switch cf.Architecture {
	case "arm64":
		opts.Arch = eif.ArchARM64
	case "amd64", "":
		opts.Arch = eif.ArchX86_64
	default:
		return opts, closeAll, nitroErr(eEIFBuilding, fmt.Errorf("unsupported image architecture %q", cf.Architecture))
	}
	opts.Name = f.name
	if opts.Name == "" {
		// nitro-cli: the URI up to the first ':'.
		opts.Name, _, _ = strings.Cut(ref, ":")
	}
	opts.Version = f.version
	if opts.Version == "" {
		opts.Version = digest.Hex
	}
	tags, digests := src.RepoTags, src.RepoDigests
	if len(tags) == 0 {
		tags = []string{ref}
	}
	if digests == nil {
		digests = []string{} // docker inspect shows [] for an image never pulled
	}
	di := enclaveDockerInfo{ID: digest.String(), RepoTags: tags, RepoDigests: digests, Architecture: cf.Architecture, Os: cf.OS, Config: cf.Config}
	if !cf.Created.IsZero() {
		di.Created = cf.Created.UTC().Format(time.RFC3339Nano)
	}
	if opts.DockerInfo, err = json.Marshal(di); err != nil {
		return opts, closeAll, nitroErr(eEIFBuilding, fmt.Errorf("docker info: %w", err))
	}
	if f.metadata != "" {
		b, err := os.ReadFile(f.metadata)
		if err != nil {
			return opts, closeAll, nitroErr(eFileOperation, fmt.Errorf("read metadata: %w", err))
		}
		if !json.Valid(b) {
			return opts, closeAll, nitroErr(eEIFBuilding, fmt.Errorf("metadata file %s is not JSON", f.metadata))
		}
		opts.CustomMetadata = b
	}
	// BuildTime: SOURCE_DATE_EPOCH, else the image's creation time, else
	// 1970: never the clock, so that rebuilding gives the same bytes.
	switch {
	case env.getenv("SOURCE_DATE_EPOCH") != "":
		opts.BuildTime = epoch
	case !cf.Created.IsZero() && cf.Created.Unix() > 0:
		opts.BuildTime = cf.Created.UTC()
	default:
		opts.BuildTime = time.Unix(0, 0).UTC()
	}
	opts.BuildTool = "nitrovm build-enclave"
	if f.cert != "" {
		signer, cert, err := loadSigningKey(f.key, f.cert)
		if err != nil {
			return opts, closeAll, nitroErr(eEIFBuilding, err)
		}
		opts.Signer, opts.Certificate = signer, cert
	}
	return opts, closeAll, nil
}

// trustLocalCA appends the local CA's root to img's CA bundles
// (build-enclave --trust-local-ca).
func trustLocalCA(env Env, img v1.Image) (v1.Image, error) {
	dir, err := ca.DefaultDir(env.getenv)
	if err != nil {
		return nil, err
	}
	c, err := ca.LoadOrCreate(dir, ca.Options{NoRenew: true})
	if err != nil {
		return nil, err
	}
	epoch, err := sourceDateEpoch(env)
	if err != nil {
		return nil, nitroErr(eInvalidArgument, err)
	}
	out, err := image.TrustCA(img, c.RootPEM(), epoch)
	if err != nil {
		return nil, nitroErr(eDockerImagePull, err)
	}
	return out, nil
}

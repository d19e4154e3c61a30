package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/eif"
)

// metadataMaxBytes caps the --metadata file, as eif_build does
// (MAX_META_FILE_SIZE in image-format src/utils/identity.rs).
const metadataMaxBytes = 4096

// buildEIFFlags are the flags of AWS's eif_build (image-format
// eif_build/src/main.rs), spelled as it spells them.
type buildEIFFlags struct {
	kernel, kernelConfig, cmdline, output string
	ramdisks                              []string
	name, version, metadata               string
	cert, key                             string
	arch, buildTime, buildTool            string
	buildToolVersion, imgOS, imgKernel    string
	algo                                  string
}

// newBuildEIFCmd returns the "build-eif" subcommand, AWS's eif_build.
func newBuildEIFCmd(env Env) *cobra.Command {
	var fl buildEIFFlags
	cmd := &cobra.Command{
		Use:   "build-eif --kernel FILE --cmdline STRING --ramdisk FILE... --output FILE",
		Short: "Build an EIF from a kernel, cmdline and ramdisks (flags of AWS's eif_build)",
		Long: `Build an EIF version 4 from a kernel, a command line and one or more ramdisks
(kept in the order given), with AWS's eif_build flags. With --signing-certificate
and --private-key (ECDSA, PEM) the image gets a signature section over PCR0 and
a PCR8. The build time comes from --build-time, else SOURCE_DATE_EPOCH, else the
clock; with it fixed, unsigned builds are byte-for-byte reproducible. Prints the
measurements as nitro-cli build-enclave does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBuildEIF(env, &fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.kernel, "kernel", "", "bzImage (x86_64) or Image (aarch64) (required)")
	f.StringVar(&fl.kernelConfig, "kernel_config", "", "kernel .config; fills OperatingSystem and KernelVersion")
	f.StringVar(&fl.cmdline, "cmdline", "", "kernel command line (required)")
	f.StringArrayVar(&fl.ramdisks, "ramdisk", nil, "ramdisk (cpio) file; repeat for more, order is kept (required)")
	f.StringVar(&fl.output, "output", "", "output EIF path (required)")
	f.StringVar(&fl.name, "name", "", "image name (default: the kernel's file name)")
	f.StringVar(&fl.version, "version", "1.0", "image version")
	f.StringVar(&fl.metadata, "metadata", "", "JSON file of custom metadata (at most 4096 bytes)")
	f.StringVar(&fl.cert, "signing-certificate", "", "PEM signing certificate (needs --private-key)")
	f.StringVar(&fl.key, "private-key", "", "PEM ECDSA private key (needs --signing-certificate)")
	f.StringVar(&fl.arch, "arch", "x86_64", "image architecture: x86_64 or aarch64")
	f.StringVar(&fl.buildTime, "build-time", "", "build time, RFC 3339 (default: SOURCE_DATE_EPOCH, else now)")
	f.StringVar(&fl.buildTool, "build-tool", "nitrovm", "build tool name recorded in the metadata")
	f.StringVar(&fl.buildToolVersion, "build-tool-version", "", "build tool version recorded in the metadata (default: nitrovm's)")
	f.StringVar(&fl.imgOS, "img-os", "OS", "operating system recorded in the metadata")
	f.StringVar(&fl.imgKernel, "img-kernel", "kernel", "kernel version recorded in the metadata")
	f.StringVar(&fl.algo, "algo", "sha384", "measurement hash; only sha384 (what Nitro uses) is supported")
	return cmd
}

func runBuildEIF(env Env, fl *buildEIFFlags) error {
	var missing []string
	for _, r := range []struct{ flag, v string }{{"--kernel", fl.kernel}, {"--cmdline", fl.cmdline}, {"--output", fl.output}} {
		if r.v == "" {
			missing = append(missing, r.flag)
		}
	}
	if len(fl.ramdisks) == 0 {
		missing = append(missing, "--ramdisk")
	}
	if len(missing) > 0 {
		return usageError{fmt.Errorf("build-eif: missing required flag(s) %s", strings.Join(missing, ", "))}
	}
	if (fl.cert == "") != (fl.key == "") {
		return usageError{errors.New("build-eif: --signing-certificate and --private-key go together")}
	}
	if fl.algo != "sha384" {
		return usageError{fmt.Errorf("build-eif: --algo %q is not supported (only sha384)", fl.algo)}
	}
	arch, err := eif.ParseArch(fl.arch)
	if err != nil {
		return usageError{fmt.Errorf("build-eif: --arch: %w", err)}
	}
	buildTime, err := resolveBuildTime(fl.buildTime, env.getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return usageError{fmt.Errorf("build-eif: %w", err)}
	}
	m, err := buildEIF(fl, arch, buildTime)
	if err != nil {
		return nitroErr(eEIFBuilding, fmt.Errorf("build eif %s: %w", fl.output, err))
	}
	fmt.Fprintf(env.Stderr, "Output file: %s\n", fl.output)
	return writeJSON(env.Stdout, struct {
		Measurements *eif.Measurements `json:"Measurements"`
	}{m})
}

// resolveBuildTime picks --build-time, else SOURCE_DATE_EPOCH, else now.
func resolveBuildTime(flag, epoch string) (time.Time, error) {
	switch {
	case flag != "":
		t, err := time.Parse(time.RFC3339Nano, flag)
		if err != nil {
			return time.Time{}, fmt.Errorf("--build-time %q is not an RFC 3339 time", flag)
		}
		return t, nil
	case epoch != "":
		s, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil || s < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a non-negative integer", epoch)
		}
		return time.Unix(s, 0).UTC(), nil
	}
	return time.Now(), nil
}

func buildEIF(fl *buildEIFFlags, arch eif.Arch, buildTime time.Time) (*eif.Measurements, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	openBlob := func(what, path string) (eif.Blob, error) {
		fd, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", what, err)
		}
		closers = append(closers, fd)
		st, err := fd.Stat()
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", what, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s %s is not a regular file", what, path)
		}
		return io.NewSectionReader(fd, 0, st.Size()), nil
	}
	opts := eif.BuildOptions{
		Cmdline:          fl.cmdline,
		Name:             fl.name,
		Version:          fl.version,
		BuildTime:        buildTime,
		BuildTool:        fl.buildTool,
		BuildToolVersion: fl.buildToolVersion,
		OperatingSystem:  fl.imgOS,
		KernelVersion:    fl.imgKernel,
		Arch:             arch,
	}
	if opts.Name == "" {
		opts.Name = filepath.Base(fl.kernel)
	}
	if opts.BuildToolVersion == "" {
		opts.BuildToolVersion = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			opts.BuildToolVersion = bi.Main.Version
		}
	}
	var err error
	if opts.Kernel, err = openBlob("kernel", fl.kernel); err != nil {
		return nil, err
	}
	for _, r := range fl.ramdisks {
		b, err := openBlob("ramdisk", r)
		if err != nil {
			return nil, err
		}
		opts.Ramdisks = append(opts.Ramdisks, b)
	}
	if fl.kernelConfig != "" {
		fd, err := os.Open(fl.kernelConfig)
		if err != nil {
			return nil, fmt.Errorf("open kernel config: %w", err)
		}
		closers = append(closers, fd)
		opts.KernelConfig = fd
	}
	if fl.metadata != "" {
		if opts.CustomMetadata, err = readMetadataFile(fl.metadata); err != nil {
			return nil, err
		}
	}
	if fl.cert != "" {
		if opts.Signer, opts.Certificate, err = loadSigningKey(fl.key, fl.cert); err != nil {
			return nil, err
		}
	}

	return writeEIF(fl.output, opts)
}

// writeEIF builds the EIF into path through replaceFile.
func writeEIF(path string, opts eif.BuildOptions) (*eif.Measurements, error) {
	return replaceFile(path, 0o644, func(w io.Writer) (*eif.Measurements, error) { return eif.Build(w, opts) })
}

// replaceFile has write fill a temporary file beside path, with mode perm,
// and renames it over path, so a failure leaves path as it was and no
// partial file behind.
func replaceFile(path string, perm os.FileMode, write func(io.Writer) (*eif.Measurements, error)) (*eif.Measurements, error) {
	out, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	m, err := write(out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(out.Name(), perm)
	}
	if err == nil {
		err = os.Rename(out.Name(), path)
	}
	if err != nil {
		os.Remove(out.Name())
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return m, nil
}

// readMetadataFile reads --metadata: a JSON file of at most metadataMaxBytes.
func readMetadataFile(path string) (json.RawMessage, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	defer fd.Close()
	b, err := io.ReadAll(io.LimitReader(fd, metadataMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read metadata %s: %w", path, err)
	}
	if len(b) > metadataMaxBytes {
		return nil, fmt.Errorf("metadata file %s exceeds the limit of %d bytes", path, metadataMaxBytes)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("metadata file %s is not valid JSON", path)
	}
	return json.RawMessage(b), nil
}

// loadSigningKey reads a PEM ECDSA private key (SEC 1 or PKCS #8) and a PEM
// certificate. nitro-cli also takes a KMS key ARN for the key; nitrovm does
// not (the AWS SDK's configuration loader would grow every nitrovm process,
// supervisors included, by 7 MB of code and 6 ms of start-up).
func loadSigningKey(keyPath, certPath string) (crypto.Signer, *x509.Certificate, error) {
	if strings.HasPrefix(keyPath, "arn:") {
		return nil, nil, fmt.Errorf("private key %s: KMS keys are not supported by nitrovm, give a PEM file", keyPath)
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read signing certificate: %w", err)
	}
	cert, err := parseCertificatePEM(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("signing certificate %s: %w", certPath, err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read private key: %w", err)
	}
	for rest := kb; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, nil, fmt.Errorf("private key %s: no PEM \"EC PRIVATE KEY\" or \"PRIVATE KEY\" block", keyPath)
		}
		switch block.Type {
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("private key %s: %w", keyPath, err)
			}
			return k, cert, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("private key %s: %w", keyPath, err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, nil, fmt.Errorf("private key %s is %T, want ECDSA", keyPath, k)
			}
			return ek, cert, nil
		}
	}
}

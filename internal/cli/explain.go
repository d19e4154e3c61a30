package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// nitroCodes names nitro-cli's error codes E00-E60 (NitroCliErrorEnum in
// aws-nitro-enclaves-cli src/common/document_errors.rs, ERROR_CODES), by
// number.
var nitroCodes = [...]string{
	"UnspecifiedError", "MissingArgument", "ConflictingArgument", "InvalidArgument",
	"SocketPairCreationFailure", "ProcessSpawnFailure", "DaemonizeProcessFailure",
	"ReadFromDiskFailure", "UnusableConnectionError", "SocketCloseError",
	"SocketConnectTimeoutError", "SocketError", "EpollError", "InotifyError",
	"InvalidCommand", "LockAcquireFailure", "ThreadJoinFailure", "SerdeError",
	"FilePermissionsError", "FileOperationFailure", "InvalidCpuConfiguration",
	"NoSuchCpuAvailableInPool", "InsufficientCpus", "MalformedCpuId", "CpuError",
	"NoSuchHugepageFlag", "InsufficientMemoryRequested", "InsufficientMemoryAvailable",
	"InvalidEnclaveFd", "IoctlFailure", "IoctlImageLoadInfoFailure",
	"IoctlSetMemoryRegionFailure", "IoctlAddVcpuFailure", "IoctlEnclaveStartFailure",
	"MemoryOverflow", "EifParsingError", "EnclaveBootFailure", "EnclaveEventWaitError",
	"EnclaveProcessCommandNotExecuted", "EnclaveProcessConnectionFailure",
	"SocketPathNotFound", "EnclaveProcessSendReplyFailure", "EnclaveMmapError",
	"EnclaveMunmapError", "EnclaveConsoleConnectionFailure", "EnclaveConsoleReadError",
	"EnclaveConsoleWriteOutputError", "IntegerParsingError", "EifBuildingError",
	"DockerImageBuildError", "DockerImagePullError", "ArtifactsPathNotSet",
	"BlobsPathNotSet", "ClockSkewError", "SignalMaskingError", "SignalUnmaskingError",
	"LoggerError", "HasherError", "EnclaveNamingError", "EIFSignatureCheckerError",
	"EIFSigningError",
}

// nitrovmCauses says when nitrovm returns each code it uses (the table in
// docs/lifecycle.md#errors). Codes missing here are nitro-cli's alone.
var nitrovmCauses = map[int]string{
	eUnspecified:           "an error no other code describes; the message says what failed.",
	eMissingArgument:       "a required argument is missing (--eif-path, --memory, the CPUs, an enclave ID or name, --output-file, an image).",
	eConflictingArgument:   "two arguments that exclude each other were given (--cpu-count and --cpu-ids, --config and a flag, --enclave-id and --enclave-name), or one was given without its partner (--signing-certificate and --private-key).",
	eInvalidArgument:       "a value is invalid: not a number, a bad memory unit, a reserved or used CID, a malformed --forward, --publish, --parent-id or config file, an unknown error code.",
	eProcessSpawn:          "the enclave's supervisor process could not be started.",
	eReadFromDisk:          "the state directory, or an enclave's record in it, cannot be read.",
	eSocket:                "no running enclave has this ID.",
	eFileOperation:         "a file cannot be opened, read or written: the EIF, a config file, an output file.",
	eInvalidCPUConfig:      "--cpu-ids names a CPU twice.",
	eNoSuchCPU:             "a CPU ID is not in the pool (NITROVM_CPU_POOL) or another enclave uses it.",
	eInsufficientCPUs:      "more CPUs were asked for than the pool has free.",
	eInsufficientMemory:    "the memory asked for is below 64 MiB or below four times the EIF's size.",
	eInsufficientAvailable: "the memory asked for is more than the host has available (MemAvailable).",
	eIoctlFailure:          "a KVM call failed while the VM was being built.",
	eEIFParsing:            "the EIF is invalid (bad header, sections or CRC) or built for another architecture than the host's.",
	eEnclaveBoot:           "the enclave did not boot: no heartbeat in time, a guest panic before it, or no usable KVM on this host.",
	eConnectionFailure:     "an enclave's supervisor does not answer and is still running 3 s later.",
	eConsoleConnection:     "the console was asked of an enclave not started with --debug-mode, as on Nitro.",
	eIntegerParsing:        "a number in the arguments cannot be parsed.",
	eEIFBuilding:           "build-enclave or build-eif could not build the image (the message names the input that failed).",
	eDockerImageBuild:      "--docker-dir was given: nitrovm builds no images, only reads them.",
	eDockerImagePull:       "the image cannot be pulled from its registry or read from the local Docker or Podman.",
	eBlobsPathNotSet:       "--blobs or NITRO_CLI_BLOBS names a directory without the blobs build-enclave needs.",
	eHasher:                "a signing certificate cannot be read for pcr --signing-certificate.",
	eEnclaveNaming:         "no enclave, or more than one, has this name.",
	eEIFSignatureChecker:   "run-enclave was given a signed EIF whose signature does not verify with its signing certificate, or whose certificate is not valid now (expired or not yet valid), as nitro-cli checks before it starts one.",
	eEIFSigning:            "sign-eif could not sign the EIF: no key or certificate, a key that does not match the certificate, an unreadable key, or an EIF that cannot hold a signature.",
}

// parseErrorCode reads "E26", "e26" or "26" as 26, within nitro-cli's range.
func parseErrorCode(s string) (int, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "E"), "e")
	n, err := strconv.Atoi(t)
	// Atoi takes a sign; "-1" is out of range, "+5" is not a code.
	if err != nil || n < 0 || n >= len(nitroCodes) || t[0] == '+' {
		return 0, fmt.Errorf("no such error code %q (nitro-cli's codes are E00 to E%02d)", s, len(nitroCodes)-1)
	}
	return n, nil
}

// explainCode returns what code n means, for explain.
func explainCode(n int) string {
	code := fmt.Sprintf("E%02d", n)
	head := code + " " + nitroCodes[n] + ": "
	if cause, ok := nitrovmCauses[n]; ok {
		return head + "nitrovm returns it when " + cause
	}
	return head + "a nitro-cli error that nitrovm never returns (nitrovm has no such step). " +
		"nitro-cli's description: https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#" + code
}

// newExplainCmd returns "explain": nitro-cli's explain, which describes an
// error code on stderr.
func newExplainCmd(env Env) *cobra.Command {
	var code string
	cmd := &cobra.Command{
		Use:   "explain --error-code Exx",
		Short: "Explain an error code returned by a command (nitro-cli explain)",
		Long: `Print what an error code of the form "[ E26 ] ..." means: when nitrovm
returns it, or that it is one of nitro-cli's that nitrovm never returns. As
nitro-cli does, the explanation goes to stderr. E26, e26 and 26 are the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code == "" {
				return nitroErr(eMissingArgument, errors.New("--error-code is required"))
			}
			n, err := parseErrorCode(code)
			if err != nil {
				return nitroErr(eInvalidArgument, err)
			}
			fmt.Fprintln(env.Stderr, explainCode(n))
			return nil
		},
	}
	cmd.Flags().StringVar(&code, "error-code", "", "error code, as printed by the failed command (E26)")
	return cmd
}

package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/attestation"
	"github.com/nitrovm/nitrovm/ca"
	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/nsm"
)

// newAttestationCmd returns the "attestation" subcommand: issue documents
// as an enclave booted from an EIF would get them, and verify documents.
func newAttestationCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attestation",
		Short: "Issue and verify attestation documents without booting",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return usageErr(c, errors.New("missing subcommand (issue, verify)"))
		},
	}
	cmd.AddCommand(newAttestationIssueCmd(env), newAttestationVerifyCmd(env))
	return cmd
}

// attIssueFlags are the flags of "attestation issue".
type attIssueFlags struct {
	eifPath, nonce, userData, publicKey string
	parentRole, parentID, moduleID      string
	debug                               bool
	out, seed, at                       string
}

func newAttestationIssueCmd(env Env) *cobra.Command {
	var fl attIssueFlags
	cmd := &cobra.Command{
		Use:   "issue --eif-path FILE [flags]",
		Short: "Issue a signed attestation document as an enclave booted from the EIF would get it",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runAttestationIssue(env, &fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.eifPath, "eif-path", "", "EIF whose measurements become PCR0/1/2/8 (required)")
	f.StringVar(&fl.nonce, "nonce", "", "nonce, hex")
	f.StringVar(&fl.userData, "user-data", "", "user data, hex")
	f.StringVar(&fl.publicKey, "public-key", "", "file whose key goes in public_key (PEM is converted to DER)")
	f.StringVar(&fl.parentRole, "parent-role", "", "parent instance IAM role ARN, measured into PCR3")
	f.StringVar(&fl.parentID, "parent-id", "", "parent instance ID, measured into PCR4")
	f.StringVar(&fl.moduleID, "module-id", "", "module ID (default <parent-id or i-0000000000000000>-enc<PCR0 prefix>)")
	f.BoolVar(&fl.debug, "debug-mode", false, "issue as a debug-mode enclave (all PCRs zero in the document)")
	f.StringVar(&fl.out, "out", "", "write the raw COSE_Sign1 document to FILE")
	f.StringVar(&fl.seed, "seed", "", "deterministic mode: derive keys and randomness from this seed (testing only)")
	f.StringVar(&fl.at, "time", "", "fixed clock, RFC 3339 (e.g. 2026-01-01T00:00:00Z) or Unix milliseconds")
	return cmd
}

func runAttestationIssue(env Env, fl *attIssueFlags) error {
	if fl.eifPath == "" {
		return nitroErr(eMissingArgument, errors.New("attestation issue: --eif-path is required"))
	}
	nonce, err := attHexFlag("nonce", fl.nonce)
	if err != nil {
		return err
	}
	userData, err := attHexFlag("user-data", fl.userData)
	if err != nil {
		return err
	}
	var pub []byte
	if fl.publicKey != "" {
		if pub, err = os.ReadFile(fl.publicKey); err != nil {
			return nitroErr(eReadFromDisk, fmt.Errorf("read --public-key: %w", err))
		}
		if b, _ := pem.Decode(pub); b != nil {
			pub = b.Bytes
		}
		if len(pub) == 0 {
			return usageError{fmt.Errorf("invalid --public-key: %s is empty", fl.publicKey)}
		}
	}
	now, err := attTimeFlag(fl.at)
	if err != nil {
		return err
	}
	f, err := eif.Open(fl.eifPath)
	if err != nil {
		return nitroErr(eEIFParsing, err)
	}
	m, err := f.Measure()
	f.Close()
	if err != nil {
		return nitroErr(eEIFParsing, fmt.Errorf("measure %s: %w", fl.eifPath, err))
	}
	dir, err := ca.DefaultDir(env.getenv)
	if err != nil {
		return err
	}
	moduleID := fl.moduleID
	if moduleID == "" {
		inst := fl.parentID
		if inst == "" {
			inst = "i-0000000000000000"
		}
		moduleID = inst + "-enc" + hex.EncodeToString(m.PCR0[:8])
	}
	cfg := nsm.EnclaveConfig{
		ModuleID: moduleID, PCR0: m.PCR0, PCR1: m.PCR1, PCR2: m.PCR2, PCR8: m.PCR8,
		ParentRoleARN: fl.parentRole, ParentInstanceID: fl.parentID,
		Debug: fl.debug, StateDir: dir, Now: now,
	}
	if fl.seed != "" {
		cfg.Rand = ca.SeededRand(fl.seed)
	}
	mod, err := nsm.NewEnclaveModule(cfg)
	if err != nil {
		return err
	}
	req, err := nsm.EncodeRequest(nsm.AttestationRequest(userData, nonce, pub))
	if err != nil {
		return err
	}
	doc, err := nsm.AttestationDocument(mod.Process(req))
	if errors.Is(err, nsm.InputTooLarge) {
		return usageError{fmt.Errorf("attestation issue: request of %d bytes exceeds the NSM's %d-byte limit (InputTooLarge)", len(req), nsm.MaxRequestSize)}
	}
	if err != nil {
		return fmt.Errorf("attestation issue: %w", err)
	}
	d, err := attestation.Parse(doc)
	if err != nil {
		return fmt.Errorf("attestation issue: %w", err)
	}
	out := attIssueResult{ModuleID: d.ModuleID, Timestamp: d.Time().Format(time.RFC3339Nano), Bytes: len(doc), CAStateDir: dir}
	if fl.out != "" {
		if err := os.WriteFile(fl.out, doc, 0o644); err != nil {
			return nitroErr(eFileOperation, fmt.Errorf("write --out: %w", err))
		}
		out.Path = fl.out
	} else {
		out.Document = base64.StdEncoding.EncodeToString(doc)
	}
	return writeJSON(env.Stdout, out)
}

// attIssueResult is the JSON printed by "attestation issue".
type attIssueResult struct {
	ModuleID   string
	Timestamp  string
	Bytes      int
	CAStateDir string
	Path       string `json:",omitempty"` // with --out
	Document   string `json:",omitempty"` // base64 COSE_Sign1, without --out
}

// attHexFlag decodes a hex flag value; "" means absent (nil).
func attHexFlag(name, v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimPrefix(v, "0x"))
	if err != nil {
		return nil, usageError{fmt.Errorf("invalid --%s %q: not hex: %v", name, v, err)}
	}
	return b, nil
}

// attTimeFlag parses --time; "" means the real clock (nil).
func attTimeFlag(v string) (func() time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		ms, err2 := strconv.ParseInt(v, 10, 64)
		if err2 != nil {
			return nil, usageError{fmt.Errorf("invalid --time %q: want RFC 3339 or Unix milliseconds", v)}
		}
		t = time.UnixMilli(ms)
	}
	t = t.UTC()
	return func() time.Time { return t }, nil
}

// attVerifyFlags are the flags of "attestation verify".
type attVerifyFlags struct {
	root  string
	pcrs  []string
	nonce string
	at    string
}

func newAttestationVerifyCmd(env Env) *cobra.Command {
	var fl attVerifyFlags
	cmd := &cobra.Command{
		Use:   "verify --root ROOT.pem [--pcr N=HEX ...] [--nonce HEX] DOC",
		Short: "Verify an attestation document: structure, ES384, chain to the root, signature, PCR and nonce policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return runAttestationVerify(env, &fl, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.root, "root", "", "trusted root certificate(s), PEM (required; 'nitrovm ca export' prints nitrovm's)")
	f.StringArrayVar(&fl.pcrs, "pcr", nil, "expected PCR value N=HEX (repeatable)")
	f.StringVar(&fl.nonce, "nonce", "", "expected nonce, hex")
	f.StringVar(&fl.at, "time", "", "check certificate validity at this time (RFC 3339 or Unix ms) instead of now")
	return cmd
}

// attVerifyResult is the JSON printed by "attestation verify".
type attVerifyResult struct {
	Valid            bool
	Reason           string            `json:",omitempty"`
	ModuleID         string            `json:",omitempty"`
	Timestamp        string            `json:",omitempty"`
	Digest           string            `json:",omitempty"`
	PCRs             map[string]string `json:",omitempty"`
	Nonce            *string           `json:",omitempty"`
	UserData         *string           `json:",omitempty"`
	PublicKey        *string           `json:",omitempty"`
	CertificateChain []string          `json:",omitempty"` // subjects, leaf first
}

func runAttestationVerify(env Env, fl *attVerifyFlags, docPath string) error {
	if fl.root == "" {
		return nitroErr(eMissingArgument, errors.New("attestation verify: --root is required"))
	}
	rootPEM, err := os.ReadFile(fl.root)
	if err != nil {
		return nitroErr(eReadFromDisk, fmt.Errorf("read --root: %w", err))
	}
	roots, err := ca.ParseRootPEM(rootPEM)
	if err != nil {
		return usageError{fmt.Errorf("invalid --root %s: %w", fl.root, err)}
	}
	opts := attestation.VerifyOptions{Roots: roots, PCRs: map[int][]byte{}}
	for _, p := range fl.pcrs {
		idx, val, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(idx)
		if !ok || err != nil || n < 0 || n >= nsm.NumPCRs {
			return usageError{fmt.Errorf("invalid --pcr %q: want N=HEX with N in 0..%d", p, nsm.NumPCRs-1)}
		}
		b, err := hex.DecodeString(strings.TrimPrefix(val, "0x"))
		if err != nil || len(b) == 0 {
			return usageError{fmt.Errorf("invalid --pcr %q: value is not hex", p)}
		}
		opts.PCRs[n] = b
	}
	if opts.Nonce, err = attHexFlag("nonce", fl.nonce); err != nil {
		return err
	}
	now, err := attTimeFlag(fl.at)
	if err != nil {
		return err
	}
	if now != nil {
		opts.CurrentTime = now()
	}
	raw, err := os.ReadFile(docPath)
	if err != nil {
		return nitroErr(eReadFromDisk, fmt.Errorf("read document: %w", err))
	}
	res, err := attestation.Verify(attDocumentBytes(raw), opts)
	if err != nil {
		if werr := writeJSON(env.Stdout, attVerifyResult{Valid: false, Reason: err.Error()}); werr != nil {
			return werr
		}
		return err
	}
	d := res.Document
	out := attVerifyResult{
		Valid:     true,
		ModuleID:  d.ModuleID,
		Timestamp: d.Time().Format(time.RFC3339Nano),
		Digest:    d.Digest,
		PCRs:      map[string]string{},
		Nonce:     attHexOrNil(d.Nonce),
		UserData:  attHexOrNil(d.UserData),
		PublicKey: attHexOrNil(d.PublicKey),
	}
	for i, v := range d.PCRs {
		out.PCRs[strconv.Itoa(i)] = hex.EncodeToString(v)
	}
	for _, c := range res.Chain {
		out.CertificateChain = append(out.CertificateChain, c.Subject.String())
	}
	return writeJSON(env.Stdout, out)
}

func attHexOrNil(b []byte) *string {
	if b == nil {
		return nil
	}
	s := hex.EncodeToString(b)
	return &s
}

// attDocumentBytes accepts a document as raw COSE_Sign1 bytes, as base64,
// or as the JSON "attestation issue" prints.
func attDocumentBytes(raw []byte) []byte {
	if len(raw) > 0 && (raw[0] == 0x84 || raw[0] == 0xd2) {
		return raw
	}
	trimmed := bytes.TrimSpace(raw)
	var j struct{ Document string }
	if json.Unmarshal(trimmed, &j) == nil && j.Document != "" {
		trimmed = []byte(j.Document)
	}
	if b, err := base64.StdEncoding.DecodeString(string(trimmed)); err == nil {
		return b
	}
	return raw
}

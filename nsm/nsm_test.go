package nsm

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
	"github.com/nitrovm/nitrovm/attestation"
	"github.com/nitrovm/nitrovm/ca"
)

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)

func fixedNow() time.Time { return testNow }

// pcrOf returns a recognisable 48-byte PCR value.
func pcrOf(b byte) []byte { return bytes.Repeat([]byte{b}, PCRSize) }

// newEnclave returns a module set up as NewEnclaveModule does, with a
// deterministic in-memory CA.
func newEnclave(t testing.TB, debug bool) *Module {
	t.Helper()
	m, err := New(Config{
		ModuleID:   "i-0123456789abcdef0-enc0123456789abcdef",
		PCRs:       map[int][]byte{0: pcrOf(0xa0), 1: pcrOf(0xa1), 2: pcrOf(0xa2), 4: Measure([]byte("i-0123456789abcdef0"))},
		LockedPCRs: BootLockedPCRs,
		Debug:      debug,
		Rand:       ca.SeededRand("nsm test"),
		Now:        fixedNow,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// send encodes req exactly as github.com/hf/nsm's Session.Send does and
// decodes the answer with its response type.
func send(t testing.TB, m *Module, req request.Request) response.Response {
	t.Helper()
	var buf bytes.Buffer
	if err := cbor.NewEncoder(&buf).Encode(req.Encoded()); err != nil {
		t.Fatalf("encode %T: %v", req, err)
	}
	raw := m.Process(buf.Bytes())
	var res response.Response
	if err := cbor.Unmarshal(raw, &res); err != nil {
		t.Fatalf("hf/nsm cannot decode response %x to %T: %v", raw, req, err)
	}
	return res
}

// TestNSMCheck replays AWS's nsm-check (aws-nitro-enclaves-nsm-api
// nsm-test/src/bin/nsm-check.rs) through hf/nsm's encoder and decoder.
func TestNSMCheck(t *testing.T) {
	m := newEnclave(t, false)
	zero := make([]byte, PCRSize)

	d := send(t, m, &request.DescribeNSM{}).DescribeNSM
	if d == nil {
		t.Fatal("DescribeNSM: no response")
	}
	if d.MaxPCRs != 32 || d.ModuleID == "" || d.Digest != response.DigestSHA384 || d.VersionMajor != 1 {
		t.Errorf("DescribeNSM: got %+v", d)
	}
	if want := []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; !slices.Equal(d.LockedPCRs, want) {
		t.Errorf("locked_pcrs: got %v, want %v", d.LockedPCRs, want)
	}
	if r := send(t, m, &request.Attestation{}); r.Attestation == nil || len(r.Attestation.Document) == 0 {
		t.Errorf("Attestation without data: got %+v", r)
	}
	for i := uint16(0); i < 32; i++ {
		r := send(t, m, &request.DescribePCR{Index: i}).DescribePCR
		if r == nil || len(r.Data) != PCRSize {
			t.Fatalf("DescribePCR %d: got %+v", i, r)
		}
		wantEmpty := i == 3 || i >= 5
		if got := bytes.Equal(r.Data, zero); got != wantEmpty {
			t.Errorf("PCR%d empty: got %v, want %v", i, got, wantEmpty)
		}
		if r.Lock != (i < 16) {
			t.Errorf("PCR%d lock: got %v, want %v", i, r.Lock, i < 16)
		}
	}
	for i := uint16(0); i < 16; i++ {
		if r := send(t, m, &request.LockPCR{Index: i}); r.Error != response.ECReadOnlyIndex {
			t.Errorf("LockPCR %d: got %q, want %q", i, r.Error, response.ECReadOnlyIndex)
		}
	}
	for range 10 {
		for i := uint16(16); i < 32; i++ {
			r := send(t, m, &request.ExtendPCR{Index: i, Data: []byte{1, 2, 3}}).ExtendPCR
			if r == nil || len(r.Data) != PCRSize || bytes.Equal(r.Data, zero) {
				t.Fatalf("ExtendPCR %d: got %+v", i, r)
			}
		}
	}
	for i := uint16(16); i < 32; i++ {
		if r := send(t, m, &request.LockPCR{Index: i}); r.LockPCR == nil {
			t.Errorf("LockPCR %d: got %+v, want LockPCR", i, r)
		}
	}
	if r := send(t, m, &request.LockPCRs{Range: 32}); r.LockPCRs == nil {
		t.Errorf("LockPCRs 32: got %+v, want LockPCRs", r)
	}
	if r := send(t, m, &request.LockPCRs{Range: 33}); r.Error != response.ErrorCode(InvalidIndex) {
		t.Errorf("LockPCRs 33: got %+v, want InvalidIndex", r)
	}
	for i := uint16(0); i < 32; i++ {
		if r := send(t, m, &request.ExtendPCR{Index: i, Data: []byte{1, 2, 3}}); r.Error != response.ECReadOnlyIndex {
			t.Errorf("ExtendPCR locked %d: got %+v, want ReadOnlyIndex", i, r)
		}
	}
	big := bytes.Repeat([]byte{128}, 1024)
	for _, a := range []*request.Attestation{
		{UserData: big}, {UserData: big, Nonce: big}, {UserData: big, Nonce: big, PublicKey: big},
	} {
		if r := send(t, m, a); r.Attestation == nil || len(r.Attestation.Document) == 0 {
			t.Errorf("Attestation with 1024-byte fields: got error %q", r.Error)
		}
	}
	var prev []byte
	for range 16 {
		r := send(t, m, &request.GetRandom{}).GetRandom
		if r == nil || len(r.Random) == 0 || bytes.Equal(r.Random, prev) {
			t.Fatalf("GetRandom: got %+v after %x", r, prev)
		}
		prev = r.Random
	}
}

// TestWireBytes pins responses byte for byte to serde_cbor's encoding of
// nsm-api's Response enum (and QEMU's for GetRandom's prefix, which Linux's
// hwrng path relies on).
func TestWireBytes(t *testing.T) {
	text := func(s string) string { return hex.EncodeToString(append([]byte{0x60 | byte(len(s))}, s...)) }
	tests := []struct {
		name, req, wantPrefix string
		wantLen               int
	}{
		{"LockPCR", "a1" + text("LockPCR") + "a1" + text("index") + "10", text("LockPCR"), 8},
		{"LockPCRs", "a1" + text("LockPCRs") + "a1" + text("range") + "10", text("LockPCRs"), 9},
		{"DescribePCR", "a1" + text("DescribePCR") + "a1" + text("index") + "00",
			"a1" + text("DescribePCR") + "a2" + text("lock") + "f5" + text("data") + "5830" + strings.Repeat("a0", 48), 1 + 12 + 1 + 5 + 1 + 5 + 2 + 48},
		{"ExtendPCR", "a1" + text("ExtendPCR") + "a2" + text("index") + "10" + text("data") + "43010203",
			"a1" + text("ExtendPCR") + "a1" + text("data") + "5830", 1 + 10 + 1 + 5 + 2 + 48},
		{"GetRandom", text("GetRandom"), "a1" + text("GetRandom") + "a1" + text("random") + "590100", 1 + 10 + 1 + 7 + 3 + 256},
		{"DescribeNSM", text("DescribeNSM"),
			"a1" + text("DescribeNSM") + "a7" + text("version_major") + "01" + text("version_minor") + "00" +
				text("version_patch") + "00" + text("module_id") + "7827" + hex.EncodeToString([]byte("i-0123456789abcdef0-enc0123456789abcdef")) +
				text("max_pcrs") + "1820" + text("locked_pcrs") + "90000102030405060708090a0b0c0d0e0f" + text("digest") + text("SHA384"), -1},
		{"Error", text("Bogus"), "a1" + text("Error") + text("InvalidOperation"), 1 + 6 + 17},
		{"Attestation", "a1" + text("Attestation") + "a3" + text("user_data") + "f6" + text("nonce") + "f6" + text("public_key") + "f6",
			"a1" + text("Attestation") + "a1" + text("document") + "59", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := hex.DecodeString(tt.req)
			got := hex.EncodeToString(newEnclave(t, false).Process(req))
			if !strings.HasPrefix(got, tt.wantPrefix) {
				t.Errorf("got %s, want prefix %s", got, tt.wantPrefix)
			}
			if tt.wantLen >= 0 && len(got)/2 != tt.wantLen {
				t.Errorf("got %d bytes, want %d", len(got)/2, tt.wantLen)
			}
			if tt.wantLen == -1 && tt.name == "DescribeNSM" && got != tt.wantPrefix {
				t.Errorf("got %s, want %s", got, tt.wantPrefix)
			}
		})
	}
}

// failingReader fails every read.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy source failed") }

// failingSigner fails to provide an identity.
type failingSigner struct{}

func (failingSigner) SigningIdentity(time.Time) (crypto.Signer, []byte, [][]byte, error) {
	return nil, nil, nil, errors.New("no identity")
}

// TestErrorCodes reaches every code the device sends.
func TestErrorCodes(t *testing.T) {
	good := newEnclave(t, false)
	broken, err := New(Config{ModuleID: "m", Rand: failingReader{}, Signer: failingSigner{}})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		m    *Module
		req  []byte
		want ErrorCode
	}{
		{"empty", good, nil, InvalidOperation},
		{"not CBOR", good, h("ff"), InvalidOperation},
		{"truncated", good, h("a16b4465736372696265504352a1"), InvalidOperation},
		{"trailing bytes", good, h("6947657452616e646f6d00"), InvalidOperation},
		{"unknown text", good, enc("Idle"), InvalidOperation},
		{"integer", good, enc(1), InvalidOperation},
		{"two entries", good, enc(map[string]any{"GetRandom": nil, "DescribeNSM": nil}), InvalidOperation},
		{"map with int key", good, enc(map[int]any{1: nil}), InvalidOperation},
		{"unit as map", good, enc(map[string]any{"GetRandom": nil}), InvalidOperation},
		{"struct as text", good, enc("DescribePCR"), InvalidOperation},
		{"unknown map", good, enc(map[string]any{"Noop": map[string]any{}}), InvalidOperation},
		{"args not a map", good, enc(map[string]any{"DescribePCR": 1}), InvalidArgument},
		{"args null", good, enc(map[string]any{"LockPCRs": nil}), InvalidArgument},
		{"missing index", good, enc(map[string]any{"DescribePCR": map[string]any{}}), InvalidArgument},
		{"index is text", good, enc(map[string]any{"DescribePCR": map[string]any{"index": "0"}}), InvalidArgument},
		{"index negative", good, enc(map[string]any{"DescribePCR": map[string]any{"index": -1}}), InvalidArgument},
		{"index float", good, enc(map[string]any{"LockPCR": map[string]any{"index": 1.5}}), InvalidArgument},
		{"index > u16", good, enc(map[string]any{"DescribePCR": map[string]any{"index": 65536}}), InvalidArgument},
		{"duplicate field", good, h("a16b4465736372696265504352a265696e6465780065696e64657801"), InvalidArgument},
		{"extend without data", good, enc(map[string]any{"ExtendPCR": map[string]any{"index": 16}}), InvalidArgument},
		{"extend data null", good, enc(map[string]any{"ExtendPCR": map[string]any{"index": 16, "data": nil}}), InvalidArgument},
		{"extend data int", good, enc(map[string]any{"ExtendPCR": map[string]any{"index": 16, "data": 1}}), InvalidArgument},
		{"attestation nonce int", good, enc(map[string]any{"Attestation": map[string]any{"nonce": 1}}), InvalidArgument},
		{"attestation user_data array", good, enc(map[string]any{"Attestation": map[string]any{"user_data": []int{1}}}), InvalidArgument},
		{"lockpcrs range text", good, enc(map[string]any{"LockPCRs": map[string]any{"range": "x"}}), InvalidArgument},
		{"describe index 32", good, enc(map[string]any{"DescribePCR": map[string]any{"index": 32}}), InvalidIndex},
		{"extend index 40", good, enc(map[string]any{"ExtendPCR": map[string]any{"index": 40, "data": []byte{}}}), InvalidIndex},
		{"lock index 32", good, enc(map[string]any{"LockPCR": map[string]any{"index": 32}}), InvalidIndex},
		{"lockpcrs 33", good, enc(map[string]any{"LockPCRs": map[string]any{"range": 33}}), InvalidIndex},
		{"extend locked", good, enc(map[string]any{"ExtendPCR": map[string]any{"index": 0, "data": []byte{1}}}), ReadOnlyIndex},
		{"lock locked", good, enc(map[string]any{"LockPCR": map[string]any{"index": 0}}), ReadOnlyIndex},
		{"too large", good, make([]byte, MaxRequestSize+1), InputTooLarge},
		{"random fails", broken, h("6947657452616e646f6d"), InternalError},
		{"signer fails", broken, h("a16b4174746573746174696f6ea0"), InternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res response.Response
			raw := tt.m.Process(tt.req)
			if err := cbor.Unmarshal(raw, &res); err != nil {
				t.Fatalf("decode %x: %v", raw, err)
			}
			if res.Error != response.ErrorCode(tt.want) {
				t.Errorf("got %q, want %q (response %x)", res.Error, tt.want, raw)
			}
		})
	}
	t.Run("BufferTooSmall", func(t *testing.T) {
		buf := make([]byte, 64)
		n := good.ProcessInto(h("6947657452616e646f6d"), buf)
		if got, want := buf[:n], encodeError(BufferTooSmall); !bytes.Equal(got, want) {
			t.Errorf("got %x, want %x", got, want)
		}
		if n := good.ProcessInto(h("6947657452616e646f6d"), make([]byte, 8)); n != 0 {
			t.Errorf("got %d bytes in an 8-byte buffer, want 0", n)
		}
	})
}

// TestTextData checks that ExtendPCR accepts data as a text string, like a
// byte string with the same bytes.
func TestTextData(t *testing.T) {
	a, b := newEnclave(t, false), newEnclave(t, false)
	ra := a.Process([]byte("\xa1\x69ExtendPCR\xa2\x65index\x10\x64data\x43abc"))
	rb := b.Process([]byte("\xa1\x69ExtendPCR\xa2\x65index\x10\x64data\x63abc"))
	if !bytes.Equal(ra, rb) {
		t.Errorf("got %x, want %x", rb, ra)
	}
	want := Extend(make([]byte, PCRSize), []byte("abc"))
	if !bytes.Contains(ra, want[:]) {
		t.Errorf("got %x, want it to contain %x", ra, want)
	}
}

// TestAttestationDocument checks a document from the module end to end:
// it verifies against the CA root and carries what was asked.
func TestAttestationDocument(t *testing.T) {
	for _, debug := range []bool{false, true} {
		m := newEnclave(t, debug)
		send(t, m, &request.ExtendPCR{Index: 20, Data: []byte("x")})
		send(t, m, &request.LockPCR{Index: 20})
		r := send(t, m, &request.Attestation{UserData: []byte("ud"), Nonce: []byte("n0"), PublicKey: []byte("pk")})
		if r.Attestation == nil {
			t.Fatalf("debug=%v: got error %q", debug, r.Error)
		}
		_, cert, bundle, err := m.signer.SigningIdentity(testNow)
		if err != nil {
			t.Fatal(err)
		}
		root, err := x509.ParseCertificate(bundle[0])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(root)
		res, err := attestation.Verify(r.Attestation.Document, attestation.VerifyOptions{Roots: pool, CurrentTime: testNow, Nonce: []byte("n0")})
		if err != nil {
			t.Fatalf("debug=%v: Verify: %v", debug, err)
		}
		d := res.Document
		if !bytes.Equal(d.Certificate, cert) || string(d.UserData) != "ud" || string(d.PublicKey) != "pk" {
			t.Errorf("debug=%v: got %+v", debug, d)
		}
		if got, want := d.Timestamp, uint64(testNow.UnixMilli()); got != want {
			t.Errorf("timestamp: got %v, want %v", got, want)
		}
		if got, want := len(d.PCRs), 17; got != want {
			t.Errorf("debug=%v: got %d PCRs, want %d", debug, got, want)
		}
		for i, v := range d.PCRs {
			live, _, _ := m.PCRs().Describe(i)
			want := live
			if debug {
				want = make([]byte, PCRSize)
			}
			if !bytes.Equal(v, want) {
				t.Errorf("debug=%v: PCR%d: got %x, want %x", debug, i, v, want)
			}
		}
	}
}

// TestDeterministic checks that a seeded, fixed-clock module reproduces its
// documents byte for byte.
func TestDeterministic(t *testing.T) {
	req := []byte("\xa1\x6bAttestation\xa0")
	a, b := newEnclave(t, false).Process(req), newEnclave(t, false).Process(req)
	if !bytes.Equal(a, b) {
		t.Errorf("two seeded modules: got %x, want %x", b, a)
	}
}

// TestNewEnclaveModule checks the boot PCRs and the persistent CA.
func TestNewEnclaveModule(t *testing.T) {
	dir := t.TempDir()
	arn := "arn:aws:iam::123456789012:role/Webserver"
	m, err := NewEnclaveModule(EnclaveConfig{
		ModuleID: "i-0000000000000000-enc1", PCR0: pcrOf(0xa0), PCR1: pcrOf(0xa1), PCR2: pcrOf(0xa2), PCR8: pcrOf(0xa8),
		ParentRoleARN: arn, ParentInstanceID: "i-0000000000000000", StateDir: dir, Now: fixedNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	// AWS's documented PCR3 for this ARN (REFERENCE §2).
	want3, _ := hex.DecodeString("78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6")
	for i, want := range map[int][]byte{0: pcrOf(0xa0), 1: pcrOf(0xa1), 2: pcrOf(0xa2), 3: want3, 4: Measure([]byte("i-0000000000000000")), 8: pcrOf(0xa8), 5: make([]byte, PCRSize)} {
		if got, locked, _ := m.PCRs().Describe(i); !bytes.Equal(got, want) || !locked {
			t.Errorf("PCR%d: got %x locked=%v, want %x locked", i, got, locked, want)
		}
	}
	c, err := ca.Load(dir, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, bundle, err := m.signer.SigningIdentity(testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundle[0], c.Root.Raw) {
		t.Error("module's cabundle root: got a different root, want the state directory's")
	}

	bad := []struct {
		name string
		cfg  EnclaveConfig
	}{
		{"short PCR0", EnclaveConfig{ModuleID: "x", PCR0: []byte{1}, PCR1: pcrOf(1), PCR2: pcrOf(2), StateDir: dir}},
		{"short PCR8", EnclaveConfig{ModuleID: "x", PCR0: pcrOf(0), PCR1: pcrOf(1), PCR2: pcrOf(2), PCR8: []byte{1}, StateDir: dir}},
		{"no module ID", EnclaveConfig{PCR0: pcrOf(0), PCR1: pcrOf(1), PCR2: pcrOf(2), StateDir: dir}},
	}
	for _, tt := range bad {
		if _, err := NewEnclaveModule(tt.cfg); err == nil {
			t.Errorf("%s: got nil error, want one", tt.name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no module ID", Config{}},
		{"locked range", Config{ModuleID: "m", LockedPCRs: 33}},
		{"bad PCR index", Config{ModuleID: "m", PCRs: map[int][]byte{32: pcrOf(1)}}},
		{"bad PCR size", Config{ModuleID: "m", PCRs: map[int][]byte{1: {1}}}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: got nil error, want one", tt.name)
		}
	}
}

// TestConcurrent exercises the module from many goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	m := newEnclave(t, false)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				send(t, m, &request.ExtendPCR{Index: uint16(16 + g), Data: []byte{byte(i)}})
				send(t, m, &request.DescribePCR{Index: uint16(16 + g)})
				send(t, m, &request.GetRandom{})
			}
			send(t, m, &request.Attestation{})
		}()
	}
	wg.Wait()
	// Each PCR saw the same 20 extensions in order: all eight agree.
	first, _, _ := m.PCRs().Describe(16)
	for g := 1; g < 8; g++ {
		if got, _, _ := m.PCRs().Describe(16 + g); !bytes.Equal(got, first) {
			t.Errorf("PCR%d: got %x, want %x", 16+g, got, first)
		}
	}
}

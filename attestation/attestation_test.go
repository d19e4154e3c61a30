package attestation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nitrite"
	"github.com/veraison/go-cose"

	"github.com/nitrovm/nitrovm/ca"
)

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type fixture struct {
	ca   *ca.CA
	leaf *ca.Leaf
	doc  *Document
	raw  []byte
	pool *x509.CertPool
}

func newFixture(t testing.TB, seed string) *fixture {
	t.Helper()
	opts := ca.Options{Rand: ca.SeededRand(seed), Now: func() time.Time { return testNow }}
	c, err := ca.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := c.IssueLeaf("i-0123456789abcdef0-enc0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for i := range 16 {
		pcrs[i] = bytes.Repeat([]byte{byte(i)}, 48)
	}
	d := &Document{
		ModuleID:    "i-0123456789abcdef0-enc0123456789abcdef",
		Digest:      DigestSHA384,
		Timestamp:   uint64(testNow.UnixMilli()),
		PCRs:        pcrs,
		Certificate: leaf.Certificate.Raw,
		CABundle:    leaf.CABundle,
		UserData:    []byte("user data"),
		Nonce:       []byte("nonce-1"),
	}
	raw, err := Sign(d, leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	return &fixture{ca: c, leaf: leaf, doc: d, raw: raw, pool: pool}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t, "a")
	res, err := Verify(f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow, Nonce: []byte("nonce-1"),
		PCRs: map[int][]byte{0: bytes.Repeat([]byte{0}, 48), 15: bytes.Repeat([]byte{15}, 48)}})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	got := res.Document
	if got.ModuleID != f.doc.ModuleID || got.Timestamp != f.doc.Timestamp || len(got.PCRs) != 16 ||
		string(got.UserData) != "user data" || got.PublicKey != nil {
		t.Errorf("got %+v, want %+v", got, f.doc)
	}
	if got, want := len(res.Chain), 4; got != want {
		t.Errorf("chain length: got %d, want %d", got, want)
	}
	if !got.Time().Equal(testNow) {
		t.Errorf("Time: got %v, want %v", got.Time(), testNow)
	}
}

// TestWireFormat pins the COSE framing and the payload's field order to
// what the real NSM emits (REFERENCE §3; nsm-api AttestationDoc).
func TestWireFormat(t *testing.T) {
	f := newFixture(t, "a")
	if got, want := hex.EncodeToString(f.raw[:8]), "8444a1013822a059"; got != want {
		t.Errorf("COSE prefix: got %s, want %s", got, want)
	}
	var arr []cbor.RawMessage
	if err := cbor.Unmarshal(f.raw, &arr); err != nil || len(arr) != 4 {
		t.Fatalf("got %d elements (%v), want 4", len(arr), err)
	}
	var sig []byte
	if err := cbor.Unmarshal(arr[3], &sig); err != nil || len(sig) != 96 {
		t.Errorf("signature: got %d bytes (%v), want 96", len(sig), err)
	}
	var payload []byte
	if err := cbor.Unmarshal(arr[2], &payload); err != nil {
		t.Fatal(err)
	}
	// Walk the payload's keys in order.
	dec := cbor.NewDecoder(bytes.NewReader(payload[1:]))
	var keys []string
	for range 9 {
		var k string
		var v cbor.RawMessage
		if err := dec.Decode(&k); err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		if k == "public_key" && !bytes.Equal(v, []byte{0xf6}) {
			t.Errorf("absent public_key: got %x, want null (f6)", []byte(v))
		}
	}
	if got, want := strings.Join(keys, ","), "module_id,digest,timestamp,pcrs,certificate,cabundle,public_key,user_data,nonce"; got != want {
		t.Errorf("payload keys: got %s, want %s", got, want)
	}
	if payload[0] != 0xa9 {
		t.Errorf("payload head: got %x, want a9", payload[0])
	}
}

func TestDeterministicSign(t *testing.T) {
	a, b := newFixture(t, "same"), newFixture(t, "same")
	if !bytes.Equal(a.raw, b.raw) {
		t.Error("same seed and clock: got different documents, want identical")
	}
	if c := newFixture(t, "other"); bytes.Equal(a.raw, c.raw) {
		t.Error("different seeds: got identical documents, want different")
	}
}

func TestTaggedAccepted(t *testing.T) {
	f := newFixture(t, "a")
	tagged := append([]byte{0xd2}, f.raw...)
	if _, err := Verify(tagged, VerifyOptions{Roots: f.pool, CurrentTime: testNow}); err != nil {
		t.Errorf("tag 18: got %v, want nil", err)
	}
}

// TestTampering checks that each kind of tampering fails with its own error.
func TestTampering(t *testing.T) {
	t.Run("no cache", func(t *testing.T) { testTampering(t, nil) })
	// A cache warm with f's chain (and a document with other's leaf under
	// other's root) must change no verdict.
	t.Run("warm cache", func(t *testing.T) { testTampering(t, &ChainCache{}) })
}

func testTampering(t *testing.T, cache *ChainCache) {
	f := newFixture(t, "a")
	other := newFixture(t, "b")
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	udAt := bytes.Index(f.raw, []byte("user data"))
	tests := []struct {
		name string
		doc  []byte
		opts VerifyOptions
		want error
		msg  string
	}{
		{"payload byte", flip(f.raw, udAt), VerifyOptions{Roots: f.pool, CurrentTime: testNow}, ErrSignature, "COSE signature does not verify"},
		{"signature byte", flip(f.raw, len(f.raw)-5), VerifyOptions{Roots: f.pool, CurrentTime: testNow}, ErrSignature, "COSE signature does not verify"},
		{"wrong root", f.raw, VerifyOptions{Roots: other.pool, CurrentTime: testNow}, ErrChain, "unknown authority"},
		{"expired leaf", f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow.Add(ca.LeafValidity + time.Minute)}, ErrChain, "expired"},
		{"not yet valid", f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow.Add(-2 * time.Hour)}, ErrChain, "not yet valid"},
		{"wrong nonce", f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow, Nonce: []byte("nonce-2")}, ErrNonce, "nonce mismatch"},
		{"wrong PCR", f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow, PCRs: map[int][]byte{3: bytes.Repeat([]byte{9}, 48)}}, ErrPCR, "PCR3 is"},
		{"absent PCR", f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow, PCRs: map[int][]byte{20: bytes.Repeat([]byte{9}, 48)}}, ErrPCR, "PCR20 absent"},
		{"bad PCR index", f.raw, VerifyOptions{Roots: f.pool, CurrentTime: testNow, PCRs: map[int][]byte{40: nil}}, ErrPCR, "PCR40 does not exist"},
		{"leaf from other CA", swapCert(t, f, other), VerifyOptions{Roots: f.pool, CurrentTime: testNow}, ErrChain, "unknown authority"},
	}
	if cache != nil {
		for _, warm := range []struct {
			doc  []byte
			pool *x509.CertPool
		}{{f.raw, f.pool}, {swapCert(t, f, other), other.pool}} {
			if _, err := Verify(warm.doc, VerifyOptions{Roots: warm.pool, CurrentTime: testNow, Chains: cache}); err != nil {
				t.Fatalf("warming the cache: %v", err)
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Chains = cache
			_, err := Verify(tt.doc, tt.opts)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
	if _, err := Verify(f.raw, VerifyOptions{}); err == nil {
		t.Error("no roots: got nil error, want one")
	}
}

// swapCert re-signs f's document with other's leaf: a valid signature
// from a chain that does not lead to f's root.
func swapCert(t *testing.T, f, other *fixture) []byte {
	d := *f.doc
	d.Certificate = other.leaf.Certificate.Raw
	d.CABundle = other.leaf.CABundle
	raw, err := Sign(&d, other.leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// signRaw wraps an arbitrary payload in a COSE_Sign1 signed by f's leaf.
func signRaw(t *testing.T, f *fixture, alg cose.Algorithm, payload []byte) []byte {
	t.Helper()
	var key *ecdsa.PrivateKey
	var err error
	if alg == cose.AlgorithmES256 {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
	}
	var s cose.Signer
	if key != nil {
		s, err = cose.NewSigner(alg, key)
	} else {
		s, err = cose.NewSigner(alg, f.leaf.Key)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := cose.Sign1Untagged(rand.Reader, s, cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: alg}}, payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMalformed(t *testing.T) {
	f := newFixture(t, "a")
	mutate := func(fn func(d *Document)) []byte {
		d := *f.doc
		d.PCRs = map[int][]byte{}
		for k, v := range f.doc.PCRs {
			d.PCRs[k] = v
		}
		fn(&d)
		p, err := d.Payload()
		if err != nil {
			t.Fatal(err)
		}
		return signRaw(t, f, cose.AlgorithmES384, p)
	}
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		doc  []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrMalformed, "empty"},
		{"too large", make([]byte, MaxDocumentBytes+1), ErrMalformed, "limit"},
		{"not CBOR", []byte{0xff}, ErrMalformed, "COSE_Sign1"},
		{"array of 3", enc([]any{[]byte{}, map[int]int{}, []byte{}}), ErrMalformed, "COSE_Sign1"},
		{"ES256", signRaw(t, f, cose.AlgorithmES256, enc(1)), ErrAlgorithm, "ES256"},
		{"short signature", enc([]any{[]byte{0xa1, 0x01, 0x38, 0x22}, map[int]int{}, []byte{0xa0}, []byte{1, 2}}), ErrMalformed, "signature is 2 bytes"},
		{"payload not a map", signRaw(t, f, cose.AlgorithmES384, enc(1)), ErrMalformed, "payload"},
		{"payload with tag", signRaw(t, f, cose.AlgorithmES384, enc(cbor.Tag{Number: 1, Content: 1})), ErrMalformed, "payload"},
		{"no module_id", mutate(func(d *Document) { d.ModuleID = "" }), ErrMalformed, "module_id"},
		{"digest", mutate(func(d *Document) { d.Digest = "SHA256" }), ErrMalformed, "digest"},
		{"timestamp", mutate(func(d *Document) { d.Timestamp = 0 }), ErrMalformed, "timestamp"},
		{"no pcrs", mutate(func(d *Document) { d.PCRs = nil }), ErrMalformed, "0 pcrs"},
		{"pcr index", mutate(func(d *Document) { d.PCRs[40] = make([]byte, 48) }), ErrMalformed, "pcr index 40"},
		{"pcr length", mutate(func(d *Document) { d.PCRs[1] = make([]byte, 47) }), ErrMalformed, "47 bytes"},
		{"no certificate", mutate(func(d *Document) { d.Certificate = nil }), ErrMalformed, "certificate is 0 bytes"},
		{"no cabundle", mutate(func(d *Document) { d.CABundle = nil }), ErrMalformed, "cabundle has 0"},
		{"empty cabundle item", mutate(func(d *Document) { d.CABundle = [][]byte{{}} }), ErrMalformed, "cabundle[0]"},
		{"huge user_data", mutate(func(d *Document) { d.UserData = make([]byte, MaxOptionalFieldBytes+1) }), ErrMalformed, "user_data"},
		{"huge nonce", mutate(func(d *Document) { d.Nonce = make([]byte, MaxOptionalFieldBytes+1) }), ErrMalformed, "nonce"},
		{"huge public_key", mutate(func(d *Document) { d.PublicKey = make([]byte, MaxOptionalFieldBytes+1) }), ErrMalformed, "public_key"},
		{"garbage certificate", mutate(func(d *Document) { d.Certificate = []byte{1} }), ErrChain, "leaf certificate"},
		{"garbage cabundle", mutate(func(d *Document) { d.CABundle = [][]byte{{1}} }), ErrChain, "cabundle[0]"},
		{"user_data as text", signRaw(t, f, cose.AlgorithmES384, enc(map[string]any{"module_id": "m", "user_data": "x"})), ErrMalformed, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.doc, VerifyOptions{Roots: f.pool, CurrentTime: testNow})
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(&Document{}, k); err == nil {
		t.Error("P-256 key: got nil error, want one")
	}
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(&Document{PCRs: map[int][]byte{-1: nil}}, k384); err == nil {
		t.Error("negative PCR index: got nil error, want one")
	}
	if _, err := Sign(&Document{ModuleID: "m"}, k384); err != nil {
		t.Errorf("bare *ecdsa.PrivateKey: got %v, want nil", err)
	}
}

// TestIndependentVerifier checks our documents with github.com/hf/nitrite,
// a verifier that shares no code with this package (its own COSE and CBOR
// handling), given our root. nitrite enforces AWS's documented field limits
// (user_data and nonce 1..512 bytes), which our fixture respects.
func TestIndependentVerifier(t *testing.T) {
	f := newFixture(t, "a")
	res, err := nitrite.Verify(f.raw, nitrite.VerifyOptions{Roots: f.pool, CurrentTime: testNow})
	if err != nil {
		t.Fatalf("nitrite.Verify: %v", err)
	}
	if !res.SignatureOK || res.Document.ModuleID != f.doc.ModuleID || !bytes.Equal(res.Document.Nonce, f.doc.Nonce) {
		t.Errorf("nitrite: got %+v", res.Document)
	}
	other := newFixture(t, "b")
	if _, err := nitrite.Verify(f.raw, nitrite.VerifyOptions{Roots: other.pool, CurrentTime: testNow}); err == nil {
		t.Error("nitrite with the wrong root: got nil error, want one")
	}
}

// BenchmarkVerify measures full verifications per second.
func BenchmarkVerify(b *testing.B) { benchVerify(b, nil) }

// BenchmarkVerifyChainCache measures verifications of documents whose chain
// is cached (one ES384 check each).
func BenchmarkVerifyChainCache(b *testing.B) { benchVerify(b, &ChainCache{}) }

func benchVerify(b *testing.B, cache *ChainCache) {
	f := newFixture(b, "bench")
	opts := VerifyOptions{Roots: f.pool, CurrentTime: testNow, Chains: cache}
	for b.Loop() {
		if _, err := Verify(f.raw, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

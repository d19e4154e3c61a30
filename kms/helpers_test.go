package kms

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/nitrovm/nitrovm/ca"
	"github.com/nitrovm/nitrovm/nsm"
)

// testEnclave is an emulated enclave: an NSM whose documents chain to the
// CA in caDir, and the RSA key it puts in them.
type testEnclave struct {
	caDir string
	pcr0  []byte
	priv  *rsa.PrivateKey
	spki  []byte
	mod   *nsm.Module
}

// sharedRSA caches one RSA-2048 key for all tests (generation is slow).
var sharedRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newTestEnclave returns an enclave whose PCR0 is SHA-384(image) and whose
// NSM signs with the CA in caDir (created on first use).
func newTestEnclave(t testing.TB, caDir, image string, debug bool) *testEnclave {
	t.Helper()
	h := sha512.Sum384([]byte(image))
	pcr0 := nsm.Measure(h[:])
	pcr1 := nsm.Measure([]byte("pcr1"))
	pcr2 := nsm.Measure([]byte("pcr2"))
	mod, err := nsm.NewEnclaveModule(nsm.EnclaveConfig{
		ModuleID: "i-0000000000000000-enc0123456789abcdef", PCR0: pcr0, PCR1: pcr1, PCR2: pcr2,
		Debug: debug, StateDir: caDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	priv := sharedRSA()
	spki, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnclave{caDir: caDir, pcr0: pcr0, priv: priv, spki: spki, mod: mod}
}

// document returns a fresh attestation document carrying the enclave's key.
func (e *testEnclave) document(t testing.TB) []byte {
	t.Helper()
	doc, err := e.mod.Attest(nil, nil, e.spki)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// roots returns the pool of caDir's CA root.
func roots(t testing.TB, caDir string) *x509.CertPool {
	t.Helper()
	c, err := ca.LoadOrCreate(caDir, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c.Root)
	return p
}

// testKMS is a Service behind httptest with an SDK client.
type testKMS struct {
	svc    *Service
	srv    *httptest.Server
	client *awskms.Client
	caDir  string
}

func newTestKMS(t testing.TB, dir string) *testKMS {
	t.Helper()
	caDir := t.TempDir()
	svc, err := New(Options{Dir: dir, Roots: roots(t, caDir)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(svc, HandlerOptions{}))
	t.Cleanup(srv.Close)
	return &testKMS{svc: svc, srv: srv, client: sdkClient(srv.URL, "AKIDTEST", "secret"), caDir: caDir}
}

// sdkClient returns an aws-sdk-go-v2 KMS client for endpoint.
func sdkClient(endpoint, id, secret string) *awskms.Client {
	return awskms.New(awskms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		Retryer:      aws.NopRetryer{},
	})
}

// wantAPIError checks that err is a KMS error of type code whose message
// contains msg.
func wantAPIError(t testing.TB, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v, want %s", err, code)
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Fatalf("got %s %q, want %s containing %q", ae.ErrorCode(), ae.ErrorMessage(), code, msg)
	}
}

var ctx = context.Background()

func randReader() io.Reader { return rand.Reader }

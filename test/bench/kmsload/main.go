// Command kmsload measures KMS Decrypt requests per second against a server
// speaking AWS KMS's JSON protocol (nitrovm kms serve, or another local KMS
// such as nsmithuk/local-kms), for scripts/bench-kms.sh:
//
//	kmsload -endpoint http://ADDR [-recipient -ca-dir DIR] [-conns N] [-duration D] [-label L]
//
// It sets up with aws-sdk-go-v2 (CreateKey, Encrypt of a 32-byte secret, one
// Decrypt checked), then sends the same Decrypt from N connections for D
// over plain HTTP keep-alive with a fixed body (no per-request SDK or
// signing work, so that the server, not the client, is measured; neither
// server checks signatures by default) and prints
//
//	BENCH kms-L requests=R seconds=S rps=X
//
// With -recipient the key's policy allows Decrypt only to PCR0 of a test
// image, and each request carries a Recipient: one of 64 distinct
// attestation documents (same RSA key) signed by the nitrovm CA in DIR, the
// CA the server trusts, so that the server verifies a new document per
// request as it would from enclaves (nothing can be cached per document).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/nitrovm/nitrovm/kms"
	"github.com/nitrovm/nitrovm/nsm"
)

// config is the command line.
type config struct {
	endpoint  string
	recipient bool
	caDir     string
	conns     int
	duration  time.Duration
	label     string
}

// documents is how many distinct attestation documents -recipient rotates.
const documents = 64

func main() {
	var c config
	flag.StringVar(&c.endpoint, "endpoint", "", "KMS endpoint, http://HOST:PORT (required)")
	flag.BoolVar(&c.recipient, "recipient", false, "Decrypt with a Recipient (needs -ca-dir)")
	flag.StringVar(&c.caDir, "ca-dir", "", "nitrovm CA directory the server trusts, to sign attestation documents")
	flag.IntVar(&c.conns, "conns", 4, "concurrent connections")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "how long to send requests")
	flag.StringVar(&c.label, "label", "kms", "name in the BENCH line")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "kmsload: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.endpoint == "" || c.conns < 1 || (c.recipient && c.caDir == "") {
		return errors.New("give -endpoint, -conns >= 1, and -ca-dir with -recipient")
	}
	ctx := context.Background()
	client := awskms.New(awskms.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(c.endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDBENCH", "bench", ""),
		Retryer:      aws.NopRetryer{},
	})
	secret := make([]byte, 32)
	rand.Read(secret)
	var encl *enclave
	in := &awskms.CreateKeyInput{Description: aws.String("kmsload")}
	if c.recipient {
		var err error
		if encl, err = newEnclave(c.caDir); err != nil {
			return err
		}
		in.Policy = aws.String(pcr0Policy(encl.pcr0))
	}
	key, err := client.CreateKey(ctx, in)
	if err != nil {
		return fmt.Errorf("CreateKey: %w", err)
	}
	enc, err := client.Encrypt(ctx, &awskms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: secret})
	if err != nil {
		return fmt.Errorf("Encrypt: %w", err)
	}

	// One checked Decrypt through the SDK.
	din := &awskms.DecryptInput{KeyId: key.KeyMetadata.KeyId, CiphertextBlob: enc.CiphertextBlob}
	if encl != nil {
		din.Recipient = &types.RecipientInfo{AttestationDocument: encl.docs[0], KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
	}
	dec, err := client.Decrypt(ctx, din)
	if err != nil {
		return fmt.Errorf("Decrypt: %w", err)
	}
	got := dec.Plaintext
	if encl != nil {
		env, err := kms.ParseEnvelope(dec.CiphertextForRecipient)
		if err != nil {
			return fmt.Errorf("CiphertextForRecipient: %w", err)
		}
		if got, err = env.Open(encl.priv); err != nil {
			return fmt.Errorf("CiphertextForRecipient: %w", err)
		}
	}
	if !bytes.Equal(got, secret) {
		return errors.New("Decrypt returned another secret")
	}

	// The fixed request bodies.
	var bodies [][]byte
	for i := 0; i < max(1, len(encl.documents())); i++ {
		req := map[string]any{"KeyId": *key.KeyMetadata.KeyId, "CiphertextBlob": base64.StdEncoding.EncodeToString(enc.CiphertextBlob)}
		if encl != nil {
			req["Recipient"] = map[string]string{"AttestationDocument": base64.StdEncoding.EncodeToString(encl.docs[i]), "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}
		}
		b, _ := json.Marshal(req)
		bodies = append(bodies, b)
	}
	n, secs, err := load(c, bodies)
	if err != nil {
		return err
	}
	fmt.Printf("BENCH kms-%s requests=%d seconds=%.2f rps=%.0f\n", c.label, n, secs, float64(n)/secs)
	return nil
}

// load sends the bodies round robin from c.conns connections for
// c.duration and returns how many succeeded; any failure ends the run.
func load(c config, bodies [][]byte) (int64, float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c.conns, MaxConnsPerHost: c.conns, DisableCompression: true}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var count atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	deadline := start.Add(c.duration)
	var wg sync.WaitGroup
	for w := 0; w < c.conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i++ {
				if err := decrypt(hc, c.endpoint, bodies[i%len(bodies)]); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return count.Load(), time.Since(start).Seconds(), firstErr
}

// decrypt posts one Decrypt and reads the answer, which must be 200.
func decrypt(hc *http.Client, endpoint string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.Decrypt")
	req.Header.Set("X-Amz-Date", "20261201T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261201/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Decrypt: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}

// enclave is an emulated enclave: its RSA key and documents carrying it.
type enclave struct {
	pcr0 []byte
	priv *rsa.PrivateKey
	docs [][]byte
}

// documents returns e's documents; nil for a nil e.
func (e *enclave) documents() [][]byte {
	if e == nil {
		return nil
	}
	return e.docs
}

// newEnclave makes an RSA-2048 key and documents with it, signed by the
// CA in caDir, for a test image's PCR0.
func newEnclave(caDir string) (*enclave, error) {
	h := sha512.Sum384([]byte("kmsload image"))
	e := &enclave{pcr0: nsm.Measure(h[:])}
	mod, err := nsm.NewEnclaveModule(nsm.EnclaveConfig{
		ModuleID: "i-0000000000000000-enc00000000000000b0", PCR0: e.pcr0,
		PCR1: nsm.Measure([]byte("pcr1")), PCR2: nsm.Measure([]byte("pcr2")), StateDir: caDir,
	})
	if err != nil {
		return nil, err
	}
	if e.priv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&e.priv.PublicKey)
	if err != nil {
		return nil, err
	}
	for i := 0; i < documents; i++ {
		doc, err := mod.Attest(nil, []byte{byte(i)}, spki)
		if err != nil {
			return nil, err
		}
		e.docs = append(e.docs, doc)
	}
	return e, nil
}

// pcr0Policy allows the parent to manage and encrypt, and Decrypt only to
// attestation documents with PCR0 pcr0.
func pcr0Policy(pcr0 []byte) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
 {"Sid":"parent","Effect":"Allow","Principal":{"AWS":"*"},"Action":["kms:Encrypt","kms:DescribeKey"],"Resource":"*"},
 {"Sid":"enclave","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*",
  "Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"%s"}}}]}`, hex.EncodeToString(pcr0))
}

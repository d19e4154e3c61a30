package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/mdlayher/vsock"

	"github.com/nitrovm/nitrovm/demo/wire"
	"github.com/nitrovm/nitrovm/kms"
)

// kmsTimeout bounds one Decrypt (TLS handshake included).
const kmsTimeout = 60 * time.Second

// kmsStep decrypts each of req's ciphertexts with AWS KMS's Decrypt and a
// Recipient, as enclaves do on Nitro: a fresh RSA-2048 key goes into an
// attestation document's public_key, KMS (reached over vsock port 8000 and
// TLS to kms.<region>.amazonaws.com, trusted through the image's CA bundle)
// answers with CiphertextForRecipient, which only this key opens.
func kmsStep(req wire.KMSRequest) (wire.KMSReport, error) {
	var rep wire.KMSReport
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return rep, fmt.Errorf("kms: RSA key: %w", err)
	}
	if rep.PublicKey, err = x509.MarshalPKIXPublicKey(&priv.PublicKey); err != nil {
		return rep, fmt.Errorf("kms: public key: %w", err)
	}
	doc, err := attest(nil, nil, rep.PublicKey)
	if err != nil {
		return rep, err
	}
	region := req.Region
	if region == "" {
		region = kms.DefaultRegion
	}
	client := kmsClient(region)
	for i, ct := range req.Ciphertexts {
		ctx, cancel := context.WithTimeout(context.Background(), kmsTimeout)
		out, err := client.Decrypt(ctx, &awskms.DecryptInput{
			CiphertextBlob: ct,
			Recipient:      &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256},
		})
		cancel()
		var res wire.KMSResult
		if err == nil {
			var secret []byte
			if secret, err = openForRecipient(out.CiphertextForRecipient, priv); err == nil {
				sum := sha256.Sum256(secret)
				res.SHA256 = hex.EncodeToString(sum[:])
			}
		}
		if err != nil {
			res.Error = kmsError(err)
			fmt.Printf("hello: KMS Decrypt %d with Recipient: %s\n", i+1, res.Error)
		} else {
			fmt.Printf("hello: KMS Decrypt %d with Recipient: secret sha256 %s\n", i+1, res.SHA256)
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// openForRecipient opens CiphertextForRecipient with the enclave's key.
func openForRecipient(b []byte, priv *rsa.PrivateKey) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("kms: the answer has no CiphertextForRecipient")
	}
	env, err := kms.ParseEnvelope(b)
	if err != nil {
		return nil, err
	}
	return env.Open(priv)
}

// kmsError is "<Code>: <message>" for a KMS error, else the error's text.
func kmsError(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

// kmsClient is an aws-sdk-go-v2 KMS client whose connections go to the
// parent's vsock port 8000; TLS, SNI and Host stay kms.<region>.amazonaws.com.
// The local KMS accepts any credentials unless run with --credentials.
func kmsClient(region string) *awskms.Client {
	tr := &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return vsock.Dial(parentCID, wire.KMSPort, nil)
		},
		ForceAttemptHTTP2:   false,
		TLSHandshakeTimeout: kmsTimeout,
	}
	return awskms.New(awskms.Options{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDENCLAVE", "enclave", ""),
		HTTPClient:  &http.Client{Transport: tr},
		Retryer:     aws.NopRetryer{},
	})
}

package kms

import (
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
)

func TestSigV4(t *testing.T) {
	svc, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ParseCredentials([]byte("[default]\naws_access_key_id = AKIDGOOD\naws_secret_access_key = s3cret\n\n[other]\naws_access_key_id=AKID2\naws_secret_access_key=two\n"))
	if err != nil || len(creds) != 2 {
		t.Fatalf("ParseCredentials: got %v %v, want two keys", creds, err)
	}
	srv := httptest.NewServer(Handler(svc, HandlerOptions{Credentials: creds}))
	defer srv.Close()
	in := &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(8)}
	if _, err := sdkClient(srv.URL, "AKIDGOOD", "s3cret").GenerateRandom(ctx, in); err != nil {
		t.Fatalf("valid signature: %v", err)
	}
	if _, err := sdkClient(srv.URL, "AKID2", "two").GenerateRandom(ctx, in); err != nil {
		t.Fatalf("valid signature, second profile: %v", err)
	}
	_, err = sdkClient(srv.URL, "AKIDGOOD", "wrong").GenerateRandom(ctx, in)
	wantAPIError(t, err, ErrInvalidSignatureAuth, "does not match the signature you provided")
	_, err = sdkClient(srv.URL, "AKIDBAD", "s3cret").GenerateRandom(ctx, in)
	wantAPIError(t, err, ErrUnrecognizedClient, "unknown access key AKIDBAD")
	status, m := rawCall(t, srv.URL, "GenerateRandom", `{"NumberOfBytes":8}`)
	if status != 400 || m["__type"] != ErrInvalidSignatureAuth {
		t.Fatalf("unsigned request: got %d %v, want 400 %s", status, m, ErrInvalidSignatureAuth)
	}
	if _, err := ParseCredentials([]byte("[default]\n")); err == nil {
		t.Fatal("ParseCredentials accepted a file without keys")
	}
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestKMSCall(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		env := Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
			if k == "NITROVM_STATE_DIR" {
				return dir
			}
			return ""
		}}
		code := Run(context.Background(), append([]string{"nitrovm"}, args...), env)
		return out.String(), errOut.String(), code
	}
	out, errOut, code := run("kms", "call", "CreateKey", `{"Description":"cli"}`)
	if code != 0 {
		t.Fatalf("CreateKey: status %d, %s", code, errOut)
	}
	var created struct{ KeyMetadata struct{ KeyId string } }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.KeyMetadata.KeyId == "" {
		t.Fatalf("CreateKey output %q: %v", out, err)
	}
	out, errOut, code = run("kms", "call", "Encrypt", `{"KeyId":"`+created.KeyMetadata.KeyId+`","Plaintext":"aGk="}`)
	if code != 0 || !strings.Contains(out, "CiphertextBlob") {
		t.Fatalf("Encrypt: status %d, %s %s", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"kms", "call", "Encrypt", `{"KeyId":"alias/none","Plaintext":"aGk="}`}, "NotFoundException: Alias alias/none is not found."},
		{[]string{"kms", "call", "Encrypt", `{`}, "SerializationException"},
		{[]string{"kms", "call", "CreateGrant", `{}`}, "UnsupportedOperationException: CreateGrant: grants are not implemented"},
		{[]string{"kms", "serve", "--listen", ""}, "give --listen or --tls-listen"},
		{[]string{"kms", "serve", "--credentials", "/nonexistent"}, "read --credentials"},
	} {
		_, errOut, code := run(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.msg) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: got status %d, stderr %q, want a one-line error containing %q", tc.args, code, errOut, tc.msg)
		}
	}
}

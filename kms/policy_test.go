package kms

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"kms:*", "kms:decrypt", true},
		{"kms:generatedatakey*", "kms:generatedatakeypair", true},
		{"kms:generatedatakey*", "kms:decrypt", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"abc", "abc", true},
		{"*", "", true},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q): got %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func TestPolicyConditions(t *testing.T) {
	pcr := "AB" + "00"
	for _, tc := range []struct {
		name, op, key, want string
		vals                map[string]string
		allowed             bool
	}{
		{"equals", OpStringEquals, "kms:RecipientAttestation:PCR0", "ab00", map[string]string{"kms:recipientattestation:pcr0": "ab00"}, true},
		{"equals is case-sensitive", OpStringEquals, "kms:RecipientAttestation:PCR0", pcr, map[string]string{"kms:recipientattestation:pcr0": "ab00"}, false},
		{"ignore case", OpStringEqualsIgnoreCase, "kms:RecipientAttestation:ImageSha384", pcr, map[string]string{"kms:recipientattestation:imagesha384": "ab00"}, true},
		{"like", OpStringLike, "kms:EncryptionContext:app", "web-*", map[string]string{"kms:encryptioncontext:app": "web-1"}, true},
		{"absent key", OpStringLike, "kms:EncryptionContext:app", "*", map[string]string{}, false},
		{"pcr8", OpStringEquals, "kms:RecipientAttestation:PCR8", "00", map[string]string{"kms:recipientattestation:pcr8": "00"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"` + tc.op + `":{"` + tc.key + `":["x","` + tc.want + `"]}}}]}`
			p, err := ParsePolicy(doc)
			if err != nil {
				t.Fatal(err)
			}
			got, why := p.Allows(RequestContext{Action: "kms:Decrypt", Resource: "arn", Values: tc.vals})
			if got != tc.allowed {
				t.Fatalf("got %v (%s), want %v", got, why, tc.allowed)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ doc, msg string }{
		{`not json`, "policy is not a JSON object"},
		{`{}`, "policy has no Statement"},
		{`{"Statement":[{"Effect":"Maybe","Action":"kms:*"}]}`, `Effect "Maybe", want Allow or Deny`},
		{`{"Statement":[{"Effect":"Allow"}]}`, "no Action"},
		{`{"Statement":[{"Effect":"Allow","Action":"kms:*","Condition":{"StringEquals":{"kms:RecipientAttestation:PCR32":"00"}}}]}`, "PCR index must be 0..31"},
		{`{"Statement":[{"Effect":"Allow","Action":"kms:*","Condition":{"StringEquals":{"aws:SourceIp":"1.2.3.4"}}}]}`, `condition key "aws:SourceIp" is not supported`},
		{`{"Statement":[{"Effect":"Allow","Action":5}]}`, "want a string or an array of strings"},
	} {
		_, err := ParsePolicy(tc.doc)
		e, ok := err.(*Error)
		if !ok || e.Type != ErrMalformedPolicy || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("ParsePolicy(%s): got %v, want %s containing %q", tc.doc, err, ErrMalformedPolicy, tc.msg)
		}
	}
}

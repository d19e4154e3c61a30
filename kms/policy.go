package kms

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy is a parsed key policy. nitrovm evaluates Effect, Action and
// Condition; Principal is accepted and ignored (every caller is treated as
// the account's root), Resource must be "*" or the key's ARN.
type Policy struct {
	Version   string
	Statement []Statement
}

// Statement is one policy statement.
type Statement struct {
	Sid       string
	Effect    string
	Principal any
	Action    stringList
	Resource  stringList
	// Condition maps an operator (StringEquals, StringEqualsIgnoreCase,
	// StringLike) to condition keys and their allowed values.
	Condition map[string]map[string]stringList
}

// stringList is a JSON string or array of strings.
type stringList []string

// UnmarshalJSON implements json.Unmarshaler.
func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or an array of strings")
	}
	*s = many
	return nil
}

// Condition operators nitrovm evaluates.
const (
	OpStringEquals           = "StringEquals"
	OpStringEqualsIgnoreCase = "StringEqualsIgnoreCase"
	OpStringLike             = "StringLike"
)

// Condition key prefixes (AWS KMS developer guide, "Condition keys for AWS
// Nitro Enclaves" and "kms:EncryptionContext:context-key").
const (
	CondImageSha384   = "kms:RecipientAttestation:ImageSha384"
	CondPCRPrefix     = "kms:RecipientAttestation:PCR"
	CondEncContextPfx = "kms:EncryptionContext:"
)

// DefaultPolicy is the key policy of a key created without one: AWS's
// default key policy, which gives the account full access.
func DefaultPolicy(account string) string {
	return `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` +
		account + `:root"},"Action":"kms:*","Resource":"*"}]}`
}

// maxPolicyBytes is KMS's limit on a key policy document (API reference,
// PutKeyPolicy "Policy": up to 32768 characters).
const maxPolicyBytes = 32768

// ParsePolicy parses and validates a key policy document.
func ParsePolicy(doc string) (*Policy, error) {
	if len(doc) > maxPolicyBytes {
		return nil, errorf(ErrMalformedPolicy, "policy is %d bytes, limit %d", len(doc), maxPolicyBytes)
	}
	var raw struct {
		Version   string
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(doc), &raw); err != nil {
		return nil, errorf(ErrMalformedPolicy, "policy is not a JSON object: %v", err)
	}
	p := &Policy{Version: raw.Version}
	st := strings.TrimSpace(string(raw.Statement))
	switch {
	case st == "" || st == "null":
		return nil, errorf(ErrMalformedPolicy, "policy has no Statement")
	case strings.HasPrefix(st, "{"):
		var s Statement
		if err := json.Unmarshal(raw.Statement, &s); err != nil {
			return nil, errorf(ErrMalformedPolicy, "Statement: %v", err)
		}
		p.Statement = []Statement{s}
	default:
		if err := json.Unmarshal(raw.Statement, &p.Statement); err != nil {
			return nil, errorf(ErrMalformedPolicy, "Statement: %v", err)
		}
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, errorf(ErrMalformedPolicy, "Statement[%d]: Effect %q, want Allow or Deny", i, s.Effect)
		}
		if len(s.Action) == 0 {
			return nil, errorf(ErrMalformedPolicy, "Statement[%d]: no Action", i)
		}
		for op, conds := range s.Condition {
			switch op {
			case OpStringEquals, OpStringEqualsIgnoreCase, OpStringLike:
			default:
				return nil, errorf(ErrMalformedPolicy, "Statement[%d]: condition operator %q is not supported by nitrovm (supported: StringEquals, StringEqualsIgnoreCase, StringLike)", i, op)
			}
			for k := range conds {
				if err := checkConditionKey(k); err != nil {
					return nil, errorf(ErrMalformedPolicy, "Statement[%d]: %v", i, err)
				}
			}
		}
	}
	return p, nil
}

// checkConditionKey accepts the condition keys nitrovm knows.
func checkConditionKey(k string) error {
	l := strings.ToLower(k)
	switch {
	case l == strings.ToLower(CondImageSha384):
		return nil
	case strings.HasPrefix(l, strings.ToLower(CondPCRPrefix)):
		var n int
		if _, err := fmt.Sscanf(l[len(CondPCRPrefix):], "%d", &n); err != nil || n < 0 || n > 31 ||
			fmt.Sprint(n) != l[len(CondPCRPrefix):] {
			return fmt.Errorf("condition key %q: PCR index must be 0..31", k)
		}
		return nil
	case strings.HasPrefix(l, strings.ToLower(CondEncContextPfx)) && len(l) > len(CondEncContextPfx):
		return nil
	}
	return fmt.Errorf("condition key %q is not supported by nitrovm (supported: %s, %sN, %sKEY)", k, CondImageSha384, CondPCRPrefix, CondEncContextPfx)
}

// RequestContext is what a policy is evaluated against.
type RequestContext struct {
	// Action is the KMS action, e.g. "kms:Decrypt".
	Action string
	// Resource is the key's ARN.
	Resource string
	// Values maps lower-cased condition keys to their values for this
	// request; a key absent here makes every condition on it false.
	Values map[string]string
}

// Allows evaluates p: an explicit Deny wins, then an Allow is needed; a
// request no statement allows is denied. It returns the reason for a denial.
func (p *Policy) Allows(rc RequestContext) (bool, string) {
	allowed := false
	for i := range p.Statement {
		s := &p.Statement[i]
		if !s.applies(rc) {
			continue
		}
		if s.Effect == "Deny" {
			return false, fmt.Sprintf("explicit deny in statement %s", s.name(i))
		}
		allowed = true
	}
	if !allowed {
		return false, "no statement in the key policy allows it"
	}
	return true, ""
}

func (s *Statement) name(i int) string {
	if s.Sid != "" {
		return fmt.Sprintf("%q", s.Sid)
	}
	return fmt.Sprint(i)
}

// applies reports whether the statement's action, resource and conditions
// all match rc.
func (s *Statement) applies(rc RequestContext) bool {
	if !anyMatch(s.Action, func(a string) bool { return globMatch(strings.ToLower(a), strings.ToLower(rc.Action)) }) {
		return false
	}
	if len(s.Resource) > 0 && !anyMatch(s.Resource, func(r string) bool { return globMatch(r, rc.Resource) }) {
		return false
	}
	for op, conds := range s.Condition {
		for k, vals := range conds {
			got, ok := rc.Values[strings.ToLower(k)]
			if !ok {
				return false
			}
			if !anyMatch(vals, func(v string) bool { return condMatch(op, v, got) }) {
				return false
			}
		}
	}
	return true
}

func anyMatch(list []string, f func(string) bool) bool {
	for _, s := range list {
		if f(s) {
			return true
		}
	}
	return false
}

// condMatch applies operator op to a policy value and a request value.
func condMatch(op, want, got string) bool {
	switch op {
	case OpStringEquals:
		return want == got
	case OpStringEqualsIgnoreCase:
		return strings.EqualFold(want, got)
	case OpStringLike:
		return globMatch(want, got)
	}
	return false
}

// globMatch matches IAM wildcards: * any run of characters, ? one
// character, everything else literally. It backtracks only to the last *,
// so it runs in O(len(pattern)*len(s)).
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

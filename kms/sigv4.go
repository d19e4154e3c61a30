package kms

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 4 verification (AWS General Reference, "Signature
// Version 4 signing process"): the canonical request is rebuilt from the
// headers the client says it signed and the signature recomputed.

// sigV4Algorithm is the only SigV4 algorithm identifier accepted.
const sigV4Algorithm = "AWS4-HMAC-SHA256"

// maxClockSkew is how far X-Amz-Date may be from now (AWS allows 15 min).
const maxClockSkew = 15 * time.Minute

// verifySigV4 checks r's Authorization header against creds.
func verifySigV4(r *http.Request, body []byte, creds map[string]string, now time.Time) error {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, sigV4Algorithm+" ") {
		return errorf(ErrInvalidSignatureAuth, "request is not signed with %s", sigV4Algorithm)
	}
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(auth, sigV4Algorithm+" "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[4] != "aws4_request" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return errorf(ErrInvalidSignatureAuth, "malformed Authorization header")
	}
	secret, ok := creds[cred[0]]
	if !ok {
		return errorf(ErrUnrecognizedClient, "The security token included in the request is invalid: unknown access key %s", cred[0])
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return errorf(ErrInvalidSignatureAuth, "X-Amz-Date %q is not yyyyMMddTHHmmssZ", amzDate)
	}
	if d := now.Sub(t); d > maxClockSkew || d < -maxClockSkew {
		return errorf(ErrInvalidSignatureAuth, "Signature expired: X-Amz-Date %s is more than %s from now", amzDate, maxClockSkew)
	}
	if cred[1] != amzDate[:8] {
		return errorf(ErrInvalidSignatureAuth, "credential scope date %s does not match X-Amz-Date", cred[1])
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	var canon bytes.Buffer
	canon.WriteString(r.Method + "\n")
	canon.WriteString(canonicalURI(r.URL) + "\n")
	canon.WriteString(canonicalQuery(r.URL) + "\n")
	for _, h := range signed {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			v = strings.Join(r.Header.Values(h), ",")
		}
		canon.WriteString(h + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	canon.WriteString("\n" + fields["SignedHeaders"] + "\n")
	bodyHash := sha256.Sum256(body)
	canon.WriteString(hex.EncodeToString(bodyHash[:]))
	if ph := r.Header.Get("X-Amz-Content-Sha256"); ph != "" && ph != hex.EncodeToString(bodyHash[:]) {
		return errorf(ErrInvalidSignatureAuth, "X-Amz-Content-Sha256 does not match the body")
	}
	scope := strings.Join(cred[1:], "/")
	crHash := sha256.Sum256(canon.Bytes())
	sts := sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crHash[:])
	k := hmacSHA256([]byte("AWS4"+secret), cred[1])
	for _, part := range cred[2:] {
		k = hmacSHA256(k, part)
	}
	want := hex.EncodeToString(hmacSHA256(k, sts))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return errorf(ErrInvalidSignatureAuth, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

func canonicalQuery(u *url.URL) string {
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string{}, q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// ParseCredentials reads AWS shared-credentials INI text
// (aws_access_key_id / aws_secret_access_key in any number of profiles)
// into an access key -> secret map.
func ParseCredentials(data []byte) (map[string]string, error) {
	creds := map[string]string{}
	var id, secret string
	flush := func() {
		if id != "" && secret != "" {
			creds[id] = secret
		}
		id, secret = "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			flush()
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "aws_access_key_id":
				id = strings.TrimSpace(v)
			case "aws_secret_access_key":
				secret = strings.TrimSpace(v)
			}
		}
	}
	flush()
	if len(creds) == 0 {
		return nil, fmt.Errorf("kms: no aws_access_key_id/aws_secret_access_key pair found")
	}
	return creds, nil
}

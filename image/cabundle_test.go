package image

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestTrustCA(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644}, "DEBIAN BUNDLE\n")
	add(&tar.Header{Name: "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", Mode: 0o644}, "AL2 BUNDLE\n")
	add(&tar.Header{Name: "etc/pki/tls/certs/ca-bundle.crt", Typeflag: tar.TypeSymlink, Linkname: "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"}, "")
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	root := "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"
	out, err := TrustCA(img, []byte(root), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(mutate.Extract(out))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	for name, want := range map[string]string{
		"etc/ssl/certs/ca-certificates.crt":                "DEBIAN BUNDLE\n\n" + root,
		"etc/pki/tls/certs/ca-bundle.crt":                  "AL2 BUNDLE\n\n" + root,
		"etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem": "AL2 BUNDLE\n",
	} {
		if got[name] != want {
			t.Errorf("%s: got %q, want %q", name, got[name], want)
		}
	}

	// An image without a bundle gets Debian's path with the root alone.
	out, err = TrustCA(empty.Image, []byte(root), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	tr = tar.NewReader(mutate.Extract(out))
	h, err := tr.Next()
	if err != nil || h.Name != "etc/ssl/certs/ca-certificates.crt" {
		t.Fatalf("got %v %v, want the Debian bundle path", h, err)
	}
}

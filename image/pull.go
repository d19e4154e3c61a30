package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PullPolicy says when to contact the registry, as docker's --pull.
type PullPolicy string

// Pull policies.
const (
	// PullMissing uses an image found locally (a Docker or Podman image
	// store, or nitrovm's cache of an earlier pull of the same reference)
	// and pulls otherwise. It is the default, as for docker run.
	PullMissing PullPolicy = "missing"
	// PullAlways resolves the reference at the registry every time;
	// layers already in the cache are not downloaded again.
	PullAlways PullPolicy = "always"
	// PullNever uses only local images.
	PullNever PullPolicy = "never"
)

// DefaultPlatform is the platform chosen from a multi-platform image when
// none is asked for: linux/amd64, the enclaves of x86 Nitro instances.
const DefaultPlatform = "linux/amd64"

// pullJobs is the number of layers downloaded at once (docker pull's
// default --max-concurrent-downloads is 3).
const pullJobs = 3

// Progress receives the progress of a pull. Its methods may be called from
// several goroutines.
type Progress interface {
	// Layer is called once per layer before it is fetched (cached is true
	// when it is already in the cache and will not be downloaded). The
	// returned LayerProgress's Write sees the downloaded bytes.
	Layer(digest v1.Hash, size int64, cached bool) LayerProgress
}

// LayerProgress follows one layer; Done is called once, with the outcome.
type LayerProgress interface {
	io.Writer
	Done(err error)
}

// PullOptions configures [Resolve].
type PullOptions struct {
	// Cache holds blobs and resolved references; required.
	Cache *Cache
	// Policy is when to contact the registry; "" is PullMissing.
	Policy PullPolicy
	// Platform is "os/arch[/variant]" to pick from a multi-platform index;
	// "" is DefaultPlatform. When set, a single-platform image of another
	// platform is refused too.
	Platform string
	// Insecure allows plain HTTP (and HTTPS without certificate checks is
	// not implied) to any registry; without it only localhost and
	// 127.0.0.1 registries may be reached over HTTP.
	Insecure bool
	// Keychain finds credentials; nil is authn.DefaultKeychain (Docker's
	// config.json in $DOCKER_CONFIG or ~/.docker: auths, credHelpers,
	// credsStore).
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil is remote.DefaultTransport.
	Transport http.RoundTripper
	// Stores are local image stores (Docker, Podman) consulted first
	// unless Policy is PullAlways.
	Stores []LocalStore
	// TempDir receives images saved from local stores; "" is os.TempDir.
	TempDir string
	// Progress, if not nil, follows layer downloads.
	Progress Progress
}

// Source is an image and what is known of where it came from, for the EIF
// metadata (nitro-cli records `docker inspect`'s RepoTags and RepoDigests).
type Source struct {
	Image v1.Image
	// RepoTags are the image's names, as docker shows them ("alpine:3.20").
	RepoTags []string
	// RepoDigests are the names by digest ("alpine@sha256:…") of what the
	// reference resolved to; empty when the origin has none (a docker save
	// archive).
	RepoDigests []string
	// From says where the image came from: "registry", "cache", "docker",
	// "podman" or "file".
	From string
}

// Resolve finds the image named by ref (a Docker reference: Docker Hub
// short names such as "alpine" are index.docker.io/library/alpine:latest),
// by the pull policy: a local store that has it, else nitrovm's cache of an
// earlier pull, else the registry. Errors are *PullError.
func Resolve(ctx context.Context, ref string, o PullOptions) (*Source, error) {
	if o.Policy == "" {
		o.Policy = PullMissing
	}
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return nil, &PullError{Image: ref, Kind: KindBadReference, Err: err}
	}
	plat, explicit, err := parsePlatform(o.Platform)
	if err != nil {
		return nil, &PullError{Image: ref, Kind: KindBadReference, Err: err}
	}
	p := &puller{o: o, ref: r, image: ref, plat: plat, explicit: explicit}
	if o.Policy != PullAlways {
		for _, s := range o.Stores {
			src, ok, err := s.Load(ctx, ref, o.TempDir)
			if err != nil {
				return nil, &PullError{Image: ref, Kind: KindLocal, Registry: s.Name, Err: err}
			}
			if ok {
				return src, nil
			}
		}
		if src, ok := p.fromCache(); ok {
			return src, nil
		}
		if o.Policy == PullNever {
			return nil, &PullError{Image: ref, Kind: KindNotFound, Err: errNotLocal}
		}
	}
	return p.pull(ctx)
}

var errNotLocal = errors.New("not in a local image store nor in nitrovm's cache, and --pull never")

func parsePlatform(s string) (v1.Platform, bool, error) {
	if s == "" {
		p, err := v1.ParsePlatform(DefaultPlatform)
		return *p, false, err
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, false, fmt.Errorf("--platform %q: want os/arch[/variant], such as linux/amd64", s)
	}
	return *p, true, nil
}

// puller is one Resolve's pull.
type puller struct {
	o        PullOptions
	ref      name.Reference
	image    string
	plat     v1.Platform
	explicit bool
}

func (p *puller) err(kind ErrorKind, err error) error {
	return &PullError{Image: p.image, Kind: kind, Registry: p.ref.Context().RegistryStr(), Err: err}
}

// fail classifies err.
func (p *puller) fail(err error) error {
	var pe *PullError
	if errors.As(err, &pe) {
		return pe
	}
	return p.err(classify(err), err)
}

func (p *puller) remoteOptions(ctx context.Context) []remote.Option {
	kc := p.o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	tr := p.o.Transport
	if tr == nil {
		tr = remote.DefaultTransport
	}
	if !p.o.Insecure {
		tr = &httpGuard{next: tr}
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(tr), remote.WithPlatform(p.plat)}
}

// pull resolves the reference at the registry, downloads what the cache
// lacks and records the resolution.
func (p *puller) pull(ctx context.Context) (*Source, error) {
	opts := p.remoteOptions(ctx)
	desc, err := remote.Get(p.ref, opts...)
	if err != nil {
		return nil, p.fail(err)
	}
	rec := refRecord{Digest: desc.Digest.String(), Manifest: desc.Digest.String()}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, p.fail(err)
		}
		child, err := p.pickPlatform(idx)
		if err != nil {
			return nil, err
		}
		rec.Manifest = child.String()
		if img, err = idx.Image(child); err != nil {
			return nil, p.fail(err)
		}
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return nil, p.fail(err)
		}
	default:
		return nil, p.err(KindOther, fmt.Errorf("the reference names a %s, not an image", desc.MediaType))
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, p.fail(err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return nil, p.fail(err)
	}
	mh, _, _ := v1.SHA256(bytes.NewReader(manifest))
	if mh.String() != rec.Manifest {
		return nil, p.err(KindDigestMismatch, &DigestMismatchError{Want: mustHash(rec.Manifest), Got: mh})
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, p.fail(err)
	}
	ch, _, _ := v1.SHA256(bytes.NewReader(config))
	if ch != m.Config.Digest {
		return nil, p.err(KindDigestMismatch, &DigestMismatchError{Want: m.Config.Digest, Got: ch})
	}
	if err := p.checkPlatform(config); err != nil {
		return nil, err
	}
	c := p.o.Cache
	if err := c.Put(mh, int64(len(manifest)), bytes.NewReader(manifest), nil); err != nil {
		return nil, p.fail(err)
	}
	if err := c.Put(ch, int64(len(config)), bytes.NewReader(config), nil); err != nil {
		return nil, p.fail(err)
	}
	if err := p.fetchLayers(img, m.Layers); err != nil {
		return nil, err
	}
	if err := c.storeRef(p.ref.String(), p.plat.String(), rec); err != nil {
		return nil, p.fail(err)
	}
	return p.source(rec, manifest, config, "registry")
}

func mustHash(s string) v1.Hash {
	h, _ := v1.NewHash(s)
	return h
}

// pickPlatform chooses the index entry for the platform.
func (p *puller) pickPlatform(idx v1.ImageIndex) (v1.Hash, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, p.fail(err)
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		if d.MediaType.IsImage() && d.Platform.Satisfies(p.plat) {
			return d.Digest, nil
		}
		if s := d.Platform.String(); s != "unknown/unknown" { // attestation manifests
			have = append(have, s)
		}
	}
	return v1.Hash{}, p.err(KindPlatform, &PlatformError{Want: p.plat.String(), Have: have})
}

// checkPlatform refuses a single-platform image of another platform than
// one asked for with --platform.
func (p *puller) checkPlatform(config []byte) error {
	if !p.explicit {
		return nil
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return p.fail(err)
	}
	got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if !got.Satisfies(p.plat) {
		return p.err(KindPlatform, &PlatformError{Want: p.plat.String(), Have: []string{got.String()}})
	}
	return nil
}

// fetchLayers downloads the layers the cache lacks, pullJobs at a time.
func (p *puller) fetchLayers(img v1.Image, layers []v1.Descriptor) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, pullJobs)
	)
	for _, d := range layers {
		cached := p.o.Cache.Verify(d.Digest) == nil
		var lp LayerProgress
		if p.o.Progress != nil {
			lp = p.o.Progress.Layer(d.Digest, d.Size, cached)
		}
		if cached {
			if lp != nil {
				lp.Done(nil)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			err := p.fetchLayer(img, d, lp)
			if lp != nil {
				lp.Done(err)
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (p *puller) fetchLayer(img v1.Image, d v1.Descriptor, lp LayerProgress) error {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return p.fail(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return p.fail(err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	var w io.Writer
	if lp != nil {
		w = lp
	}
	err = p.o.Cache.Put(d.Digest, d.Size, cr, w)
	if err == nil {
		return nil
	}
	kind := classify(err)
	if kind == KindOther && cr.n < d.Size {
		kind = KindInterrupted
	}
	return p.err(kind, &LayerError{Digest: d.Digest, Got: cr.n, Size: d.Size, Err: err})
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// fromCache returns the image a previous pull of the reference resolved
// to, when the cache still has all of it, intact.
func (p *puller) fromCache() (*Source, bool) {
	c := p.o.Cache
	rec, ok := c.lookupRef(p.ref.String(), p.plat.String())
	if !ok {
		return nil, false
	}
	manifest, err := c.ReadBlob(mustHash(rec.Manifest))
	if err != nil {
		return nil, false
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, false
	}
	config, err := c.ReadBlob(m.Config.Digest)
	if err != nil {
		return nil, false
	}
	for _, l := range m.Layers {
		if c.Verify(l.Digest) != nil { // a corrupt blob is removed and pulled again
			return nil, false
		}
	}
	src, err := p.source(rec, manifest, config, "cache")
	return src, err == nil
}

// source builds the Source of a resolved image whose blobs are cached.
func (p *puller) source(rec refRecord, manifest, config []byte, from string) (*Source, error) {
	img, err := partial.CompressedToImage(&cachedImage{cache: p.o.Cache, manifest: manifest, config: config})
	if err != nil {
		return nil, p.fail(err)
	}
	repo := familiarName(p.ref.Context().Name())
	s := &Source{Image: img, From: from, RepoDigests: []string{repo + "@" + rec.Digest}}
	if t, ok := p.ref.(name.Tag); ok {
		s.RepoTags = []string{familiarName(t.Name())}
	}
	return s, nil
}

// cachedImage is an image whose manifest and config are in memory and
// whose layers are cache blobs, verified when opened.
type cachedImage struct {
	cache            *Cache
	manifest, config []byte
}

// RawConfigFile implements partial.CompressedImageCore.
func (c *cachedImage) RawConfigFile() ([]byte, error) { return c.config, nil }

// MediaType implements partial.CompressedImageCore.
func (c *cachedImage) MediaType() (types.MediaType, error) {
	m, err := v1.ParseManifest(bytes.NewReader(c.manifest))
	if err != nil {
		return "", err
	}
	if m.MediaType != "" {
		return m.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

// RawManifest implements partial.CompressedImageCore.
func (c *cachedImage) RawManifest() ([]byte, error) { return c.manifest, nil }

// LayerByDigest implements partial.CompressedImageCore.
func (c *cachedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := v1.ParseManifest(bytes.NewReader(c.manifest))
	if err != nil {
		return nil, err
	}
	if h == m.Config.Digest {
		return &cachedLayer{cache: c.cache, desc: m.Config}, nil
	}
	for _, d := range m.Layers {
		if d.Digest == h {
			return &cachedLayer{cache: c.cache, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("image: no layer %s in the manifest", h)
}

// cachedLayer is a layer blob in the cache.
type cachedLayer struct {
	cache *Cache
	desc  v1.Descriptor
}

// Digest implements partial.CompressedLayer.
func (l *cachedLayer) Digest() (v1.Hash, error) { return l.desc.Digest, nil }

// Size implements partial.CompressedLayer.
func (l *cachedLayer) Size() (int64, error) { return l.desc.Size, nil }

// MediaType implements partial.CompressedLayer.
func (l *cachedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Compressed implements partial.CompressedLayer: the blob, checked against
// its digest first.
func (l *cachedLayer) Compressed() (io.ReadCloser, error) { return l.cache.Open(l.desc.Digest) }

// httpGuard refuses plain-HTTP requests except to loopback registries
// (localhost, 127.0.0.1, [::1]); go-containerregistry would otherwise
// fall back to HTTP for private-network addresses too.
type httpGuard struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (g *httpGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !isLoopbackHost(r.URL.Hostname()) {
		return nil, &insecureError{host: r.URL.Host}
	}
	return g.next.RoundTrip(r)
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

type insecureError struct{ host string }

func (e *insecureError) Error() string {
	return fmt.Sprintf("%s answers only over plain HTTP, which nitrovm uses only for localhost and 127.0.0.1; pass --insecure-registry to allow it", e.host)
}

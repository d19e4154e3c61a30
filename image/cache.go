package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Cache is the image cache: registry blobs (layers, manifests, configs)
// stored by digest, and the digest each pulled reference resolved to.
//
// Layout under Dir:
//
//	blobs/sha256/<hex>   a blob whose SHA-256 is <hex>, checked when read
//	refs/<escaped ref>   JSON refRecord: what `ref` (for one platform) resolved to
//
// A blob only gets its name once it is complete and verified: it is
// written to a temporary file in the same directory and renamed, so an
// interrupted download leaves no partial blob under a digest name (only a
// ".tmp-*" file, which [Cache.Prune] removes and readers ignore).
type Cache struct {
	// Dir is the cache directory, ${NITROVM_CACHE:-~/.cache/nitrovm}/images.
	Dir string
}

// refRecord is what the cache remembers of a pulled reference.
type refRecord struct {
	// Digest is the digest of what the reference named: an index or a manifest.
	Digest string `json:"digest"`
	// Manifest is the digest of the chosen image manifest.
	Manifest string `json:"manifest"`
}

// ErrCorrupt is returned (wrapped) when a cached blob does not match its
// digest; the blob is removed.
var ErrCorrupt = errors.New("image: cached blob does not match its digest")

func (c *Cache) blobPath(h v1.Hash) (string, error) {
	if h.Algorithm != "sha256" || len(h.Hex) != sha256.Size*2 {
		return "", fmt.Errorf("image: unsupported digest %q", h)
	}
	if _, err := hex.DecodeString(h.Hex); err != nil {
		return "", fmt.Errorf("image: bad digest %q", h)
	}
	return filepath.Join(c.Dir, "blobs", "sha256", h.Hex), nil
}

// Has reports whether a blob is cached (without checking its contents).
func (c *Cache) Has(h v1.Hash) bool {
	p, err := c.blobPath(h)
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// Verify checks a cached blob against its digest, removing it when it does
// not match (the error then wraps [ErrCorrupt]). A missing blob gives an
// error wrapping fs.ErrNotExist.
func (c *Cache) Verify(h v1.Hash) error {
	p, err := c.blobPath(h)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return fmt.Errorf("image: read cached %s: %w", h, err)
	}
	if got := hex.EncodeToString(d.Sum(nil)); got != h.Hex {
		os.Remove(p)
		return fmt.Errorf("%w: %s holds sha256:%s (removed)", ErrCorrupt, p, got)
	}
	return nil
}

// Open opens a cached blob after verifying it (see Verify).
func (c *Cache) Open(h v1.Hash) (*os.File, error) {
	if err := c.Verify(h); err != nil {
		return nil, err
	}
	p, _ := c.blobPath(h)
	return os.Open(p)
}

// ReadBlob returns a small cached blob (manifest, config), verified.
func (c *Cache) ReadBlob(h v1.Hash) ([]byte, error) {
	f, err := c.Open(h)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// DigestMismatchError is returned when downloaded bytes do not hash to the
// digest they were fetched by.
type DigestMismatchError struct {
	Want, Got v1.Hash
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("content of %s hashes to %s", e.Want, e.Got)
}

// Put stores the blob read from r, which must hash to h and be size bytes
// long (size < 0: any length). It writes a temporary file in the blob
// directory and renames it into place only when complete and verified; on
// any error nothing is left behind. w, if not nil, sees every byte read.
func (c *Cache) Put(h v1.Hash, size int64, r io.Reader, w io.Writer) (err error) {
	p, err := c.blobPath(h)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	d := sha256.New()
	dst := io.MultiWriter(tmp, d)
	if w != nil {
		dst = io.MultiWriter(tmp, d, w)
	}
	n, err := io.Copy(dst, r)
	if mm := mismatch(h, d, n, size); mm != nil && (err == nil || n == size) {
		// The registry served other bytes than the digest names. Reported
		// before any checksum error of the reader, which says the same.
		return mm
	}
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("got %d bytes of %s, want %d: %w", n, h, size, io.ErrUnexpectedEOF)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

func mismatch(want v1.Hash, d hash.Hash, n, size int64) error {
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(d.Sum(nil))}
	if got == want || (size >= 0 && n != size) {
		return nil
	}
	return &DigestMismatchError{Want: want, Got: got}
}

// refPath names the record of ref for platform.
func (c *Cache) refPath(ref, platform string) string {
	return filepath.Join(c.Dir, "refs", url.PathEscape(ref+"|"+platform))
}

// lookupRef returns what ref resolved to when last pulled for platform.
func (c *Cache) lookupRef(ref, platform string) (refRecord, bool) {
	var r refRecord
	b, err := os.ReadFile(c.refPath(ref, platform))
	if err != nil || json.Unmarshal(b, &r) != nil || r.Digest == "" || r.Manifest == "" {
		return refRecord{}, false
	}
	return r, true
}

// storeRef records what ref resolved to, atomically.
func (c *Cache) storeRef(ref, platform string, r refRecord) error {
	p := c.refPath(ref, platform)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Prune empties the cache and returns the number of bytes freed. Only the
// cache's own entries (blobs, refs and temporary files) are removed.
func (c *Cache) Prune() (int64, error) {
	var freed int64
	for _, sub := range []string{"blobs", "refs"} {
		root := filepath.Join(c.Dir, sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					freed += fi.Size()
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return freed, fmt.Errorf("image: prune %s: %w", root, err)
		}
		if err := os.RemoveAll(root); err != nil {
			return freed, fmt.Errorf("image: prune %s: %w", root, err)
		}
	}
	return freed, nil
}

// tempFiles lists the temporary files left in the blob directory (tests).
func (c *Cache) tempFiles() []string {
	ents, _ := os.ReadDir(filepath.Join(c.Dir, "blobs", "sha256"))
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/image"
)

// pullProgress reports layer downloads on stderr: on a terminal one
// progress bar per layer (bytes, rate, ETA); otherwise one line per layer
// when it is done; nothing when quiet.
type pullProgress struct {
	w     io.Writer
	quiet bool
	bars  *mpb.Progress // nil without a terminal
	mu    sync.Mutex    // serializes the line output
}

func newPullProgress(w io.Writer, quiet bool) *pullProgress {
	p := &pullProgress{w: w, quiet: quiet}
	if !quiet && isTerminal(w) {
		p.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return p
}

// isTerminal reports whether w is a terminal with a known width (the bars
// draw nothing on a terminal of width 0, as a pty nobody sized has).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	return err == nil && ws.Col > 0
}

// wait lets the bars draw their final state.
func (p *pullProgress) wait() {
	if p.bars != nil {
		p.bars.Wait()
	}
}

// shortDigest is the first 12 hex digits, as docker pull shows layers.
func shortDigest(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Hex[:12]
	}
	return h.Hex
}

// Layer implements image.Progress.
func (p *pullProgress) Layer(d v1.Hash, size int64, cached bool) image.LayerProgress {
	if p.quiet {
		return nopLayer{}
	}
	if p.bars == nil {
		return &lineLayer{p: p, digest: d, size: size, cached: cached}
	}
	label := shortDigest(d)
	if cached {
		b := p.bars.AddBar(size, mpb.PrependDecorators(decor.Name(label+" ", decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Name("already cached")))
		b.SetCurrent(size)
		b.SetTotal(size, true)
		return nopLayer{}
	}
	b := p.bars.AddBar(size,
		mpb.PrependDecorators(decor.Name(label+" ", decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30, decor.WCSyncSpace), "pulled"),
			decor.OnComplete(decor.OnAbort(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace), "failed"), ""),
		))
	return &barLayer{bar: b, last: time.Now()}
}

type nopLayer struct{}

func (nopLayer) Write(b []byte) (int, error) { return len(b), nil }
func (nopLayer) Done(error)                  {}

// barLayer feeds a progress bar.
type barLayer struct {
	bar  *mpb.Bar
	last time.Time
}

func (l *barLayer) Write(b []byte) (int, error) {
	now := time.Now()
	l.bar.EwmaIncrBy(len(b), now.Sub(l.last))
	l.last = now
	return len(b), nil
}

func (l *barLayer) Done(err error) {
	if err != nil {
		l.bar.Abort(false)
		return
	}
	l.bar.SetTotal(-1, true)
}

// lineLayer prints one line when the layer is done.
type lineLayer struct {
	p      *pullProgress
	digest v1.Hash
	size   int64
	cached bool
	n      int64
}

func (l *lineLayer) Write(b []byte) (int, error) {
	l.n += int64(len(b))
	return len(b), nil
}

func (l *lineLayer) Done(err error) {
	if err != nil {
		return // the build's error says what happened
	}
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	what := "pulled"
	if l.cached {
		what = "already cached"
	}
	fmt.Fprintf(l.p.w, "layer %s: %s (%s)\n", shortDigest(l.digest), what, humanBytes(l.size))
}

// humanBytes formats n in binary units, as "2.1 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/image"
)

// pullProgress reports layer downloads on stderr: on a terminal one
// progress bar per layer (bytes, rate, ETA); otherwise one line per layer
// when it is done; nothing when quiet.
type pullProgress struct {
	w     io.Writer
	quiet bool
	bars  *barSet    // nil without a terminal
	mu    sync.Mutex // serializes the line output
}

func newPullProgress(w io.Writer, quiet bool) *pullProgress {
	p := &pullProgress{w: w, quiet: quiet}
	if !quiet {
		if cols := terminalWidth(w); cols > 0 {
			p.bars = newBarSet(w, cols)
		}
	}
	return p
}

// terminalWidth returns the columns of the terminal w, 0 if w is not a
// terminal or one of unknown width (a pty nobody sized), where bars
// cannot be drawn.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// wait draws the bars' final state and stops redrawing.
func (p *pullProgress) wait() {
	if p.bars != nil {
		p.bars.close()
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
	b := p.bars.add(shortDigest(d), size)
	if cached {
		p.bars.finish(b, size, barCached)
		return nopLayer{}
	}
	return &barLayer{set: p.bars, bar: b}
}

type nopLayer struct{}

func (nopLayer) Write(b []byte) (int, error) { return len(b), nil }
func (nopLayer) Done(error)                  {}

// barRefresh is how often a terminal's bars are redrawn.
const barRefresh = 150 * time.Millisecond

// barState is where a layer's download stands.
type barState int

const (
	barRunning barState = iota
	barPulled
	barCached
	barFailed
)

// bar is one layer's line on the terminal.
type bar struct {
	label string
	total int64
	n     int64
	start time.Time
	end   time.Time // when it left barRunning
	state barState
}

// barSet draws one line per layer on a terminal, redrawn every barRefresh
// in place (the cursor moves back up over the lines drawn before). Layer
// labels and figures are ASCII, so a line's bytes are its columns.
type barSet struct {
	w    io.Writer
	cols int
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex // guards the fields below
	bars  []*bar
	drawn int // lines drawn so far
}

func newBarSet(w io.Writer, cols int) *barSet {
	s := &barSet{w: w, cols: cols, stop: make(chan struct{}), done: make(chan struct{})}
	go s.refresh()
	return s
}

func (s *barSet) refresh() {
	defer close(s.done)
	t := time.NewTicker(barRefresh)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.draw()
		}
	}
}

// close stops the redrawing and draws the final state.
func (s *barSet) close() {
	close(s.stop)
	<-s.done
	s.draw()
}

func (s *barSet) add(label string, total int64) *bar {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &bar{label: label, total: total, start: time.Now()}
	s.bars = append(s.bars, b)
	return b
}

func (s *barSet) advance(b *bar, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.n += int64(n)
}

// finish ends b in state st; n >= 0 replaces its byte count.
func (s *barSet) finish(b *bar, n int64, st barState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= 0 {
		b.n = n
	}
	b.state, b.end = st, time.Now()
}

// draw rewrites every bar's line.
func (s *barSet) draw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out strings.Builder
	if s.drawn > 0 {
		fmt.Fprintf(&out, "\x1b[%dA", s.drawn)
	}
	now := time.Now()
	for _, b := range s.bars {
		line := b.line(now)
		if len(line) > s.cols-1 {
			line = line[:max(s.cols-1, 0)]
		}
		out.WriteString("\r\x1b[2K")
		out.WriteString(line)
		out.WriteString("\n")
	}
	s.drawn = len(s.bars)
	io.WriteString(s.w, out.String())
}

// barWidth is the number of cells of a bar's gauge.
const barWidth = 24

// line formats b as "label  1.5 MiB / 3.0 MiB [=====>   ] 2.1 MiB/s 1s".
func (b *bar) line(now time.Time) string {
	if b.state == barCached {
		return b.label + " already cached"
	}
	gauge := make([]byte, barWidth)
	for i := range gauge {
		gauge[i] = ' '
	}
	if b.total > 0 {
		fill := int(min(b.n, b.total) * barWidth / b.total)
		for i := range fill {
			gauge[i] = '='
		}
		if fill < barWidth && b.state == barRunning {
			gauge[fill] = '>'
		}
	}
	line := fmt.Sprintf("%s %s / %s [%s]", b.label, humanBytes(b.n), humanBytes(b.total), gauge)
	switch b.state {
	case barPulled:
		return line + " pulled"
	case barFailed:
		return line + " failed"
	}
	if secs := now.Sub(b.start).Seconds(); secs > 0 && b.n > 0 {
		rate := float64(b.n) / secs
		line += " " + humanBytes(int64(rate)) + "/s"
		if b.total > b.n {
			line += " " + (time.Duration(float64(b.total-b.n)/rate) * time.Second).Round(time.Second).String()
		}
	}
	return line
}

// barLayer feeds a progress bar.
type barLayer struct {
	set *barSet
	bar *bar
}

func (l *barLayer) Write(b []byte) (int, error) {
	l.set.advance(l.bar, len(b))
	return len(b), nil
}

func (l *barLayer) Done(err error) {
	if err != nil {
		l.set.finish(l.bar, -1, barFailed)
		return
	}
	l.set.finish(l.bar, -1, barPulled)
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

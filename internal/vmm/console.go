package vmm

import (
	"bytes"
	"io"
)

// panicMarker starts the line Linux prints when it panics (kernel/panic.c).
const panicMarker = "Kernel panic - not syncing"

// lineMaxBytes bounds the console line kept for panic detection.
const lineMaxBytes = 512

// consoleScanner forwards guest console bytes to out and reports the first
// line containing panicMarker. Its Write is called with the UART's lock held,
// so it needs none of its own.
type consoleScanner struct {
	out     io.Writer
	line    []byte
	seen    bool
	onPanic func(line string)
}

// Write implements io.Writer; it never fails (a failing console is dropped).
func (c *consoleScanner) Write(p []byte) (int, error) {
	if c.out != nil {
		if _, err := c.out.Write(p); err != nil {
			c.out = nil
		}
	}
	if c.seen {
		return len(p), nil
	}
	for _, b := range p {
		switch b {
		case '\n':
			c.endLine()
		case '\r':
		default:
			if len(c.line) < lineMaxBytes {
				c.line = append(c.line, b)
			}
		}
	}
	return len(p), nil
}

// endLine checks the completed line for a panic.
func (c *consoleScanner) endLine() {
	if i := bytes.Index(c.line, []byte(panicMarker)); i >= 0 && !c.seen {
		c.seen = true
		if c.onPanic != nil {
			c.onPanic(string(c.line[i:]))
		}
	}
	c.line = c.line[:0]
}

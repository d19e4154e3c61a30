package vmm

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// panicMarker starts the line Linux prints when it panics (kernel/panic.c).
const panicMarker = "Kernel panic - not syncing"

// lineMaxBytes bounds the console line kept for panic detection. A longer
// line keeps its latest bytes, at least half of lineMaxBytes: the kernel
// appends its panic line to whatever partial line the tty left on the
// same vCPU (a progress bar redrawn with '\r', output without a newline),
// and it must still be found there.
const lineMaxBytes = 512

// consoleBufBytes is how much console output is held before it is written
// out even without a newline.
const consoleBufBytes = 4096

// consoleFlushDelay is how long a partial line (a prompt, or a line the
// guest is still printing) waits before it is written out anyway.
const consoleFlushDelay = 20 * time.Millisecond

// consoleScanner forwards guest console bytes to out and reports the first
// line containing panicMarker. The UART hands it one byte per guest port
// write; it writes whole lines to out (a partial line after
// consoleFlushDelay), so a console costs one write(2) per line, not per
// byte. It is safe for concurrent use.
//
// Output goes out as the guest wrote it, but lines are assembled per vCPU
// for the panic check: a panicking kernel prints its panic line from one
// vCPU without taking the UART's lock (kernel/panic.c sets
// oops_in_progress, and the 8250 console then only tries the lock), so
// tty output that another vCPU's interrupt handler is still sending can
// land in the middle of it ("[    4.27] Kernelanic= panic - not
// syncing"). That vCPU's own line still holds the whole panic line.
type consoleScanner struct {
	out     io.Writer
	onPanic func(line string)

	mu      sync.Mutex
	pending []byte      // output not yet written to out; guarded by mu.
	timer   *time.Timer // flushes pending after consoleFlushDelay; guarded by mu.
	armed   bool        // timer is running; guarded by mu.
	lines   [][]byte    // each vCPU's current line, for panic detection (one per vCPU, or made on first use); guarded by mu.
	seen    bool        // a panic line was reported; guarded by mu.
}

// Write implements io.Writer, as bytes from vCPU 0.
func (c *consoleScanner) Write(p []byte) (int, error) { return c.WriteFrom(0, p) }

// WriteFrom implements serial.SourceWriter; it never fails (a failing
// console is dropped).
func (c *consoleScanner) WriteFrom(vcpu int, p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) == 0 {
		c.lines = make([][]byte, 1)
	}
	if vcpu < 0 || vcpu >= len(c.lines) {
		vcpu = 0 // not a vCPU of this VM: share vCPU 0's line.
	}
	line := c.lines[vcpu]
	var panicLine string
	for _, b := range p {
		if c.out != nil {
			if c.pending == nil {
				c.pending = make([]byte, 0, consoleBufBytes)
			}
			c.pending = append(c.pending, b)
			if b == '\n' || len(c.pending) == consoleBufBytes {
				c.flushLocked()
			}
		}
		if c.seen {
			continue
		}
		switch b {
		case '\n':
			if i := bytes.Index(line, []byte(panicMarker)); i >= 0 {
				c.seen = true
				panicLine = string(line[i:])
			}
			line = line[:0]
		case '\r':
		default:
			if len(line) == lineMaxBytes {
				line = line[:copy(line, line[lineMaxBytes/2:])]
			}
			line = append(line, b)
		}
	}
	c.lines[vcpu] = line
	if len(c.pending) > 0 && !c.armed {
		c.armed = true
		if c.timer == nil {
			c.timer = time.AfterFunc(consoleFlushDelay, c.timerFlush)
		} else {
			c.timer.Reset(consoleFlushDelay)
		}
	}
	if panicLine != "" && c.onPanic != nil {
		c.flushLocked() // the panic line is on the console before the VM stops.
		c.onPanic(panicLine)
	}
	return len(p), nil
}

// timerFlush writes out a partial line that waited consoleFlushDelay.
func (c *consoleScanner) timerFlush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	c.flushLocked()
}

// flush writes out everything pending and stops the timer; Run calls it
// once the vCPUs have stopped.
func (c *consoleScanner) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.armed = false
	c.flushLocked()
}

// flushLocked writes pending to out; c.mu must be held.
func (c *consoleScanner) flushLocked() {
	if len(c.pending) == 0 || c.out == nil {
		c.pending = c.pending[:0]
		return
	}
	if _, err := c.out.Write(c.pending); err != nil {
		c.out = nil
	}
	c.pending = c.pending[:0]
}

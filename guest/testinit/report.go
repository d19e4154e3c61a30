package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/vsock"
)

// The report channel: with kernel parameter nitrovm.report=PORT, testinit
// also sends every "NITROVM-TEST" line to the parent (CID 3) on vsock port
// PORT, so that a production-mode enclave, which has no console, can
// report. The host side listens there, e.g. on the Unix socket
// <vsock-uds>_PORT of nitrovm run-enclave.
const (
	// reportParam is the kernel parameter naming the parent port.
	reportParam = "nitrovm.report="
	// reportAckTimeout bounds the wait, after the last line, for the
	// parent to close its side, which tells that every line arrived.
	reportAckTimeout = 10 * time.Second
)

// reportPort returns the port given by nitrovm.report=PORT on the kernel
// command line (the last one wins), or false when there is none or it is
// not a valid non-zero port.
func reportPort(cmdline string) (uint32, bool) {
	var port uint32
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, reportParam)
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil || p == 0 || p == vmaddrCIDAny {
			port = 0
			continue
		}
		port = uint32(p)
	}
	return port, port != 0
}

// reportConn is the write side of a report channel; *vsock.Conn is one.
type reportConn interface {
	io.ReadWriteCloser
	CloseWrite() error
	SetDeadline(time.Time) error
}

// attach sends every line printed so far to c and every later one too.
// If sending fails it closes c, and the report stays console only.
func (r *report) attach(c reportConn) error {
	if r.sink != nil {
		return errors.New("report: channel already attached")
	}
	if _, err := c.Write(r.lines.Bytes()); err != nil {
		c.Close()
		return fmt.Errorf("report: send the first %d bytes: %w", r.lines.Len(), err)
	}
	r.sink = c
	return nil
}

// connect dials the parent's port and attaches the connection. A failure
// is only logged: the report then goes to the console alone.
func (r *report) connect(port uint32) {
	if r.dialed {
		return
	}
	r.dialed = true
	c, err := vsock.Dial(parentCID, port, nil)
	if err != nil {
		r.logf("report: dial parent port %d: %v (console only)", port, err)
		return
	}
	if err := r.attach(c); err != nil {
		r.logf("%v (console only)", err)
		return
	}
	r.logf("report: sending to parent port %d", port)
}

// line prints one machine-readable line on the console and, if attached,
// on the report channel. A channel that fails is dropped.
func (r *report) line(s string) {
	s = linePrefix + s + "\n"
	io.WriteString(r.w, s)
	if !r.dialed {
		r.lines.WriteString(s)
	}
	if r.sink == nil {
		return
	}
	if _, err := io.WriteString(r.sink, s); err != nil {
		r.sink.Close()
		r.sink = nil
		r.logf("report: send: %v (console only from now on)", err)
	}
}

// close ends the report channel: it shuts down the sending side and waits
// (up to reportAckTimeout) for the parent to close its side, so that no
// line is lost when the guest reboots right after.
func (r *report) close() {
	c := r.sink
	if c == nil {
		return
	}
	r.sink = nil
	defer c.Close()
	if err := c.CloseWrite(); err != nil {
		r.logf("report: close: %v", err)
		return
	}
	if err := c.SetDeadline(time.Now().Add(reportAckTimeout)); err != nil {
		r.logf("report: set deadline: %v", err)
	}
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		r.logf("report: the parent did not close within %v", reportAckTimeout)
	case err != nil:
		r.logf("report: wait for the parent to close: %v", err)
	case n > 0:
		r.logf("report: the parent sent %d unexpected bytes", n)
	}
}

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/vsock"
)

// Ports and sizes of the vsock-echo check. The end-to-end test on the
// host relies on them.
const (
	// echoPort is where the guest echoes every connection back.
	echoPort = 5005
	// stopPort ends the check: the first connection to it stops the echo
	// server.
	stopPort = 5006
	// defaultForwardPort is the parent port the check dials, which the
	// e2e test forwards to a host TCP echo server (--forward 8000=...).
	// Kernel parameter nitrovm.vsock.forward=PORT changes it; 0 skips.
	defaultForwardPort = 8000
	// unservedPort is a parent port nobody serves: connecting must be
	// refused at once.
	unservedPort = 8999
	// forwardBytes is how much random data goes through the forward.
	forwardBytes = 1 << 20
	// defaultEchoTimeout ends the check if no one connects to stopPort;
	// kernel parameter nitrovm.vsock.timeout=SECONDS changes it.
	defaultEchoTimeout = 10 * time.Minute
	// refusalMax is how fast a refusal must come (a timeout is 2 s).
	refusalMax = time.Second
	// vmaddrCIDAny is VMADDR_CID_ANY (include/uapi/linux/vm_sockets.h).
	vmaddrCIDAny = 0xFFFF_FFFF
)

// vsockEcho exercises the enclave's vsock device from the inside:
//
//	NITROVM-TEST vsock-listen=5005               echo server ready (stop: connect to 5006)
//	NITROVM-TEST vsock-forward=ok bytes=N ms=M   guest -> parent port 8000 echoed N bytes
//	NITROVM-TEST vsock-refused=ok ms=M           parent port 8999 refused at once
//	NITROVM-TEST vsock-echo=stopped conns=N bytes=M
//
// The host connects to guest port 5005 through any endpoint (Unix socket,
// TCP publish, AF_VSOCK), sends data and reads it back; each connection
// is echoed until the host closes its sending side. A connection to port
// 5006 (or the timeout) ends the check.
func vsockEcho(r *report) error {
	forwardPort, timeout := vsockParams()
	l, err := vsock.ListenContextID(vmaddrCIDAny, echoPort, nil)
	if err != nil {
		return fmt.Errorf("vsock: listen on port %d: %w", echoPort, err)
	}
	defer l.Close()
	stop, err := vsock.ListenContextID(vmaddrCIDAny, stopPort, nil)
	if err != nil {
		return fmt.Errorf("vsock: listen on port %d: %w", stopPort, err)
	}
	defer stop.Close()

	var conns, total atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := echoConn(c)
				total.Add(n)
				if err != nil {
					r.logf("vsock echo connection: %v", err)
				}
			}()
		}
	}()
	r.kv("vsock-listen", "%d", echoPort)

	var errs []error
	if forwardPort != 0 {
		if err := checkForward(r, forwardPort); err != nil {
			r.kv("vsock-forward", "fail err=%s", oneLine(err.Error()))
			errs = append(errs, err)
		}
	}
	if err := checkRefused(r); err != nil {
		r.kv("vsock-refused", "fail err=%s", oneLine(err.Error()))
		errs = append(errs, err)
	}

	stopped := make(chan struct{})
	go func() {
		if c, err := stop.Accept(); err == nil {
			c.Close()
		}
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(timeout):
		errs = append(errs, fmt.Errorf("vsock: no stop connection on port %d within %s", stopPort, timeout))
	}
	l.Close()
	stop.Close()
	wg.Wait()
	r.kv("vsock-echo", "stopped conns=%d bytes=%d", conns.Load(), total.Load())
	return errors.Join(errs...)
}

// echoConn copies c back to itself until the peer shuts down its
// sending side, then closes c. It returns the bytes echoed.
func echoConn(c net.Conn) (int64, error) {
	defer c.Close()
	n, err := io.Copy(c, c)
	if err != nil {
		return n, fmt.Errorf("echo after %d bytes: %w", n, err)
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return n, fmt.Errorf("close write: %w", err)
		}
	}
	return n, nil
}

// checkForward sends forwardBytes of random data to the parent's port,
// which the host forwards to an echo server, and compares the echo.
func checkForward(r *report, port uint32) error {
	start := time.Now()
	c, err := vsock.Dial(parentCID, port, nil)
	if err != nil {
		return fmt.Errorf("vsock: dial parent port %d: %w", port, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return fmt.Errorf("vsock: set deadline: %w", err)
	}
	data := make([]byte, forwardBytes)
	if _, err := rand.Read(data); err != nil {
		return fmt.Errorf("vsock: random data: %w", err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("vsock: read echo from parent port %d after %d bytes: %w", port, len(got), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("vsock: write to parent port %d: %w", port, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("vsock: echo from parent port %d: got %d bytes sha256 %x, want %d bytes sha256 %x",
			port, len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
	r.kv("vsock-forward", "ok bytes=%d ms=%d", len(got), time.Since(start).Milliseconds())
	return nil
}

// checkRefused connects to a parent port nobody serves and expects an
// immediate refusal (a reset), not a timeout.
func checkRefused(r *report) error {
	start := time.Now()
	c, err := vsock.Dial(parentCID, unservedPort, nil)
	took := time.Since(start)
	if err == nil {
		c.Close()
		return fmt.Errorf("vsock: parent port %d accepted, want a refusal", unservedPort)
	}
	if took > refusalMax {
		return fmt.Errorf("vsock: parent port %d refused after %v (%v), want under %v", unservedPort, took, err, refusalMax)
	}
	r.kv("vsock-refused", "ok ms=%d", took.Milliseconds())
	return nil
}

// vsockParams reads nitrovm.vsock.forward=PORT and
// nitrovm.vsock.timeout=SECONDS from the kernel command line.
func vsockParams() (forwardPort uint32, timeout time.Duration) {
	forwardPort, timeout = defaultForwardPort, defaultEchoTimeout
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "nitrovm.vsock.forward="); ok {
			if p, err := strconv.ParseUint(v, 10, 32); err == nil {
				forwardPort = uint32(p)
			}
		}
		if v, ok := strings.CutPrefix(f, "nitrovm.vsock.timeout="); ok {
			if s, err := strconv.ParseUint(v, 10, 32); err == nil && s > 0 {
				timeout = time.Duration(s) * time.Second
			}
		}
	}
	return
}

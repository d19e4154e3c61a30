package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/vsock"
	"github.com/nitrovm/nitrovm/internal/idleconn"
	"golang.org/x/sys/unix"
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
	// defaultForwardBytes is how much data goes through the forward;
	// kernel parameter nitrovm.vsock.bytes=N changes it.
	defaultForwardBytes = 1 << 20
	// defaultEchoTimeout ends the check if no one connects to stopPort;
	// kernel parameter nitrovm.vsock.timeout=SECONDS changes it.
	defaultEchoTimeout = 10 * time.Minute
	// smallBufBytes is the socket buffer (SO_VM_SOCKETS_BUFFER_SIZE) of
	// a second forward, smallBufForwardBytes long: a window smaller than
	// the device's, both ways (Linux 6.12.y keeps at most its own buffer
	// in flight). An echo does not show a device that grants credit too
	// late for such a window, as the echoed data carries its fwd_cnt; the
	// vsock package's unit tests do.
	smallBufBytes        = 64 << 10
	smallBufForwardBytes = 1 << 20
	// forwardIdle is how long the forward may make no progress.
	forwardIdle = time.Minute
	// refusalMax is how fast a refusal must come (a timeout is 2 s).
	refusalMax = time.Second
	// vmaddrCIDAny is VMADDR_CID_ANY (include/uapi/linux/vm_sockets.h).
	vmaddrCIDAny = 0xFFFF_FFFF
)

// vsockEcho exercises the enclave's vsock device from the inside:
//
//	NITROVM-TEST vsock-listen=5005               echo server ready (stop: connect to 5006)
//	NITROVM-TEST vsock-forward=ok bytes=N ms=M   guest -> parent port 8000 echoed N bytes
//	NITROVM-TEST vsock-forward-smallbuf=ok bytes=N ms=M   the same, 1 MiB, 64 KiB socket buffer
//	NITROVM-TEST vsock-refused=ok ms=M           parent port 8999 refused at once
//	NITROVM-TEST vsock-echo=stopped conns=N bytes=M
//
// The host connects to guest port 5005 through any endpoint (Unix socket,
// TCP publish, AF_VSOCK), sends data and reads it back; each connection
// is echoed until the host closes its sending side. A connection to port
// 5006 (or the timeout) ends the check.
func vsockEcho(r *report) error {
	forwardPort, forwardBytes, timeout := vsockParams()
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
		if err := checkForward(r, "vsock-forward", forwardPort, forwardBytes, 0); err != nil {
			r.kv("vsock-forward", "fail err=%s", oneLine(err.Error()))
			errs = append(errs, err)
		}
		if err := checkForward(r, "vsock-forward-smallbuf", forwardPort, smallBufForwardBytes, smallBufBytes); err != nil {
			r.kv("vsock-forward-smallbuf", "fail err=%s", oneLine(err.Error()))
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

// checkForward sends n bytes of pseudo-random data (a ChaCha8 stream with
// a random seed, generated as it goes so that 64 MiB need no 64 MiB
// buffer) to the parent's port, which the host forwards to an echo
// server, and compares the SHA-256 of what came back with what was sent.
// A sockBuf other than 0 sets the socket's buffer size first. It reports
// under key.
func checkForward(r *report, key string, port uint32, n int64, sockBuf uint64) error {
	start := time.Now()
	c, err := vsock.Dial(parentCID, port, nil)
	if err != nil {
		return fmt.Errorf("vsock: dial parent port %d: %w", port, err)
	}
	defer c.Close()
	if sockBuf != 0 {
		if err := setBufferSize(c, sockBuf); err != nil {
			return err
		}
	}
	// A transfer that stops fails after forwardIdle; a slow one (under
	// nested emulation, with other transfers at once, 64 MiB have taken
	// over two minutes) does not.
	ic := idleconn.Conn{Conn: c, Idle: forwardIdle}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return fmt.Errorf("vsock: random seed: %w", err)
	}
	type sent struct {
		sum [sha256.Size]byte
		err error
	}
	werr := make(chan sent, 1)
	go func() {
		h := sha256.New()
		src := io.LimitReader(mrand.NewChaCha8(seed), n)
		_, err := io.Copy(io.MultiWriter(ic, h), src)
		if err == nil {
			err = c.CloseWrite()
		}
		var res sent
		copy(res.sum[:], h.Sum(nil))
		res.err = err
		werr <- res
	}()
	h := sha256.New()
	got, err := io.Copy(h, ic)
	if err != nil {
		return fmt.Errorf("vsock: read echo from parent port %d after %d bytes: %w", port, got, err)
	}
	w := <-werr
	if w.err != nil {
		return fmt.Errorf("vsock: write to parent port %d: %w", port, w.err)
	}
	if sum := h.Sum(nil); got != n || !bytes.Equal(sum, w.sum[:]) {
		return fmt.Errorf("vsock: echo from parent port %d: got %d bytes sha256 %x, want %d bytes sha256 %x",
			port, got, sum, n, w.sum)
	}
	r.kv(key, "ok bytes=%d ms=%d", got, time.Since(start).Milliseconds())
	return nil
}

// setBufferSize sets c's SO_VM_SOCKETS_BUFFER_SIZE, the receive buffer it
// advertises as buf_alloc (and, since Linux 6.12.y, the most it keeps in
// flight).
func setBufferSize(c *vsock.Conn, n uint64) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("vsock: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptUint64(int(fd), unix.AF_VSOCK, unix.SO_VM_SOCKETS_BUFFER_SIZE, n)
	}); err != nil {
		return fmt.Errorf("vsock: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("vsock: set SO_VM_SOCKETS_BUFFER_SIZE %d: %w", n, serr)
	}
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

// vsockParams reads nitrovm.vsock.forward=PORT, nitrovm.vsock.bytes=N and
// nitrovm.vsock.timeout=SECONDS from the kernel command line.
func vsockParams() (forwardPort uint32, forwardBytes int64, timeout time.Duration) {
	forwardPort, forwardBytes, timeout = defaultForwardPort, defaultForwardBytes, defaultEchoTimeout
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
		if v, ok := strings.CutPrefix(f, "nitrovm.vsock.bytes="); ok {
			if b, err := strconv.ParseInt(v, 10, 64); err == nil && b > 0 {
				forwardBytes = b
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

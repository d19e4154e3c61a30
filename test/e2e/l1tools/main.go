// Command l1tools is the parent-side client of nitrovm's vsock end-to-end
// tests. It runs inside the nested L1 VM beside nitrovm (see package
// test/e2e) and talks to a test enclave (guest/testinit's vsock-echo check)
// through nitrovm's host endpoints. Every result is one machine-readable
// line starting with "L1TOOLS ", followed by space-separated key=value
// fields; the exit status is 0 when every check passed.
//
// Usage:
//
//	l1tools echo-check (--uds PATH --port P | --tcp ADDR | --cid C --port P) [--bytes N] [--conns C] [--burst]
//	l1tools connect (--uds PATH --port P | --tcp ADDR | --cid C --port P)
//	l1tools tcp-echo-server ADDR
//	l1tools uds-echo-server PATH
//	l1tools afvsock-echo-server PORT
//	l1tools uds-sink --path PATH --out FILE [--timeout D]
//	l1tools runas UID GID[,GROUP...] [VAR=VALUE...] CMD [ARG...]
//
// runas runs CMD as the given user and groups (the first is the primary
// group) with the variables added to its environment, for the non-root
// run-enclave check; its exit status is CMD's.
//
// echo-check opens C connections to an echo server in the enclave (one
// after the other, or all at once with --burst) and checks each with a
// one-byte echo, then on all of them at once sends N random bytes while
// reading the echo back, and compares
// SHA-256 digests; it prints the time taken and the throughput seen by the
// host in each direction, in MB/s (10^6 bytes): to_enclave_MBps is the bytes
// sent over the time until the last byte was written, from_enclave_MBps the
// bytes echoed over the time until the last one was read, both counted from
// the start. With an echo server both directions run at once and bound each
// other, so these are loaded figures, not one-way maxima. connect opens one connection and closes it (the
// enclave check's stop port). The servers echo every connection until the
// peer closes its sending side and print one line per connection.
//
// uds-sink listens on the Unix socket PATH (where nitrovm delivers an
// enclave's connections to parent port P when PATH is <vsock-uds>_P),
// accepts one connection, copies it to FILE until the peer closes its
// sending side, then closes the connection and exits, printing
// "L1TOOLS sink listen=PATH" when ready and "L1TOOLS sink path=PATH
// bytes=N ok=1" (or "ok=0 err=...") at the end. It gives up after the
// timeout (default 5m).
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
	"github.com/nitrovm/nitrovm/internal/idleconn"
)

// linePrefix starts every result line.
const linePrefix = "L1TOOLS "

// vmaddrCIDAny is VMADDR_CID_ANY (include/uapi/linux/vm_sockets.h).
const vmaddrCIDAny = 0xFFFF_FFFF

// connectTimeout bounds a hybrid vsock CONNECT handshake.
const connectTimeout = 30 * time.Second

// echoIdle is how long an echo-check transfer may make no progress (a slow
// one is fine: 64 MiB took 94 s nested, beside three other transfers).
const echoIdle = time.Minute

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: l1tools echo-check|connect|tcp-echo-server|uds-echo-server|afvsock-echo-server|uds-sink|runas ...")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "echo-check":
		err = echoCheck(args)
	case "connect":
		err = connectCmd(args)
	case "runas":
		err = runAs(args)
	case "tcp-echo-server":
		err = serve("tcp", args, func(a string) (net.Listener, error) { return net.Listen("tcp", a) })
	case "uds-echo-server":
		err = serve("uds", args, func(a string) (net.Listener, error) {
			os.Remove(a)
			l, err := net.Listen("unix", a)
			if err == nil {
				// The enclave's supervisor dials this socket after
				// dropping to an unprivileged user (docs/security.md).
				err = os.Chmod(a, 0o666)
			}
			return l, err
		})
	case "afvsock-echo-server":
		err = serve("afvsock", args, func(a string) (net.Listener, error) {
			p, err := strconv.ParseUint(a, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("port %q: %w", a, err)
			}
			return vsock.ListenContextID(vmaddrCIDAny, uint32(p), nil)
		})
	case "uds-sink":
		err = udsSink(args)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "l1tools: %v\n", err)
		os.Exit(1)
	}
}

// endpoint says how to reach an enclave port from the host.
type endpoint struct {
	uds  string // hybrid vsock Unix socket, with port
	port uint
	tcp  string // TCP publish address
	cid  uint   // AF_VSOCK context ID (a QEMU vhost-vsock guest), with port
}

// addFlags registers the endpoint flags on fs.
func (e *endpoint) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.uds, "uds", "", "hybrid vsock Unix socket of the enclave")
	fs.UintVar(&e.port, "port", 0, "enclave port to CONNECT to through --uds")
	fs.StringVar(&e.tcp, "tcp", "", "TCP address published to the enclave port")
	fs.UintVar(&e.cid, "cid", 0, "AF_VSOCK context ID of the guest to CONNECT to port --port (vhost-vsock)")
}

// kind names the endpoint in result lines.
func (e *endpoint) kind() string {
	switch {
	case e.uds != "":
		return "uds"
	case e.cid != 0:
		return "afvsock"
	}
	return "tcp"
}

// dial connects to the enclave port. The result has CloseWrite.
func (e *endpoint) dial() (net.Conn, error) {
	given := 0
	for _, set := range []bool{e.uds != "", e.tcp != "", e.cid != 0} {
		if set {
			given++
		}
	}
	if given != 1 {
		return nil, errors.New("give exactly one of --uds, --tcp and --cid")
	}
	if e.cid != 0 {
		if e.cid > 0xffff_ffff || e.port > 0xffff_ffff {
			return nil, fmt.Errorf("--cid %d --port %d: out of range", e.cid, e.port)
		}
		return vsock.Dial(uint32(e.cid), uint32(e.port), nil)
	}
	if e.tcp != "" {
		return net.Dial("tcp", e.tcp)
	}
	c, err := net.Dial("unix", e.uds)
	if err != nil {
		return nil, err
	}
	if err := hybridConnect(c, e.port); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// hybridConnect sends "CONNECT port\n" and reads the "OK n\n" answer a byte
// at a time, so that nothing the enclave sends after it is consumed.
func hybridConnect(c net.Conn, port uint) error {
	if err := c.SetDeadline(time.Now().Add(connectTimeout)); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64 {
		if _, err := c.Read(b); err != nil {
			return fmt.Errorf("CONNECT %d: no OK line (got %q): %w", port, line, err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	if !strings.HasPrefix(string(line), "OK ") {
		return fmt.Errorf("CONNECT %d: got %q, want OK <port>", port, line)
	}
	return c.SetDeadline(time.Time{})
}

// probeByte is echoed once on each connection before the transfer.
const probeByte = 0x5A

// probe sends probeByte on c and reads its echo, so that the enclave side
// of the connection is known to be up (a TCP publish accepts before the
// enclave does). It closes c on failure.
func probe(c net.Conn) error {
	b := []byte{probeByte}
	_, err := c.Write(b)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(connectTimeout))
		_, err = io.ReadFull(c, b)
		c.SetReadDeadline(time.Time{})
	}
	if err == nil && b[0] != probeByte {
		err = fmt.Errorf("got %#x, want %#x", b[0], probeByte)
	}
	if err != nil {
		c.Close()
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// echoResult is one connection's echo-check outcome.
type echoResult struct {
	sent, echo []byte        // SHA-256 digests
	n          int64         // bytes echoed
	wrote      time.Duration // until the last byte was written
	read       time.Duration // until the last echoed byte was read
	err        error
}

// echoOne sends n pseudo-random bytes (ChaCha8 seeded from crypto/rand) to
// c while reading the echo, then closes the sending side and compares.
func echoOne(c net.Conn, n int64, start time.Time) (r echoResult) {
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		r.err = fmt.Errorf("%T has no CloseWrite", c)
		return r
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		r.err = err
		return r
	}
	// A stuck transfer is reported, not waited on until the harness's
	// timeout kills the whole check.
	c = idleconn.Conn{Conn: c, Idle: echoIdle}
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		src := io.LimitReader(mrand.NewChaCha8(seed), n)
		_, err := io.CopyBuffer(io.MultiWriter(c, sent), src, make([]byte, 256<<10))
		if err == nil {
			err = cw.CloseWrite()
		}
		r.wrote = time.Since(start)
		werr <- err
	}()
	got := sha256.New()
	m, err := io.CopyBuffer(got, c, make([]byte, 256<<10))
	r.read, r.n = time.Since(start), m
	if err2 := <-werr; err == nil && err2 != nil {
		err = fmt.Errorf("write: %w", err2)
	}
	r.sent, r.echo = sent.Sum(nil), got.Sum(nil)
	switch {
	case err != nil:
		r.err = fmt.Errorf("after %d bytes: %w", m, err)
	case m != n || !bytes.Equal(r.sent, r.echo):
		r.err = fmt.Errorf("got %d bytes with SHA-256 %x, want %d bytes with %x", m, r.echo, n, r.sent)
	}
	return r
}

// echoCheck implements "echo-check".
func echoCheck(args []string) error {
	fs := flag.NewFlagSet("echo-check", flag.ContinueOnError)
	var e endpoint
	e.addFlags(fs)
	size := fs.String("bytes", "64MiB", "bytes per connection (suffix KiB, MiB)")
	conns := fs.Int("conns", 1, "concurrent connections")
	burst := fs.Bool("burst", false, "dial all connections at once instead of one after the other")
	if err := fs.Parse(args); err != nil {
		return err
	}
	n, err := parseSize(*size)
	if err != nil {
		return fmt.Errorf("--bytes: %w", err)
	}
	// Connect first, then start every transfer at once: the connections
	// are all open and busy together, without a burst of handshakes that
	// a slow (emulated) guest may not answer within the VMM's connection
	// request timeout.
	results := make([]echoResult, *conns)
	cs := make([]net.Conn, *conns)
	var dialMax time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range cs {
		dial := func() {
			t0 := time.Now()
			c, err := e.dial()
			if err == nil {
				err = probe(c)
			}
			mu.Lock()
			defer mu.Unlock()
			dialMax = max(dialMax, time.Since(t0))
			if err != nil {
				results[i].err = fmt.Errorf("dial: %w", err)
				return
			}
			cs[i] = c
		}
		if *burst {
			wg.Add(1)
			go func() { defer wg.Done(); dial() }()
		} else {
			dial()
		}
	}
	wg.Wait()
	start := time.Now()
	for i, c := range cs {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = echoOne(c, n, start)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	ok := 0
	var firstErr error
	var wrote, read time.Duration
	for _, r := range results {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		ok++
		wrote, read = max(wrote, r.wrote), max(read, r.read)
	}
	total := float64(n) * float64(ok)
	line := fmt.Sprintf("echo kind=%s conns=%d ok=%d bytes_each=%d seconds=%.3f dial_ms_max=%d",
		e.kind(), *conns, ok, n, elapsed.Seconds(), dialMax.Milliseconds())
	if ok > 0 {
		line += fmt.Sprintf(" to_enclave_MBps=%.1f from_enclave_MBps=%.1f", total/1e6/wrote.Seconds(), total/1e6/read.Seconds())
	}
	if *conns == 1 && results[0].sent != nil {
		line += fmt.Sprintf(" sha256_sent=%x sha256_echo=%x", results[0].sent, results[0].echo)
	}
	if firstErr != nil {
		line += " err=" + strings.Join(strings.Fields(firstErr.Error()), "_")
	}
	fmt.Println(linePrefix + line)
	if ok != *conns {
		return fmt.Errorf("echo-check: %d of %d connections failed, first: %w", *conns-ok, *conns, firstErr)
	}
	return nil
}

// connectCmd implements "connect".
func connectCmd(args []string) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	var e endpoint
	e.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	c, err := e.dial()
	ms := time.Since(start).Milliseconds()
	if err != nil {
		fmt.Printf("%sconnect kind=%s port=%d ok=0 ms=%d err=%s\n", linePrefix, e.kind(), e.port, ms, strings.Join(strings.Fields(err.Error()), "_"))
		return err
	}
	c.Close()
	fmt.Printf("%sconnect kind=%s port=%d ok=1 ms=%d\n", linePrefix, e.kind(), e.port, ms)
	return nil
}

// serve runs an echo server on the listener listen(args[0]) makes until
// killed, printing a line when ready and one per connection.
func serve(kind string, args []string, listen func(string) (net.Listener, error)) error {
	if len(args) != 1 {
		return fmt.Errorf("%s-echo-server: want one address", kind)
	}
	l, err := listen(args[0])
	if err != nil {
		return fmt.Errorf("%s-echo-server: listen: %w", kind, err)
	}
	fmt.Printf("%sserver kind=%s listen=%s\n", linePrefix, kind, args[0])
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	for {
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("%s-echo-server: accept: %w", kind, err)
		}
		go func() {
			defer c.Close()
			n, err := io.Copy(c, c)
			if cw, ok := c.(interface{ CloseWrite() error }); ok && err == nil {
				err = cw.CloseWrite()
			}
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(out, "%sserved kind=%s remote=%s bytes=%d err=%v\n", linePrefix, kind, c.RemoteAddr(), n, err)
			out.Flush()
		}()
	}
}

// udsSink implements "uds-sink".
func udsSink(args []string) error {
	fs := flag.NewFlagSet("uds-sink", flag.ContinueOnError)
	path := fs.String("path", "", "Unix socket to listen on")
	out := fs.String("out", "", "file to copy the connection to")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *out == "" {
		return errors.New("uds-sink: --path and --out are required")
	}
	n, err := sink(*path, *out, *timeout, func() { fmt.Printf("%ssink listen=%s\n", linePrefix, *path) })
	if err != nil {
		fmt.Printf("%ssink path=%s bytes=%d ok=0 err=%s\n", linePrefix, *path, n, strings.Join(strings.Fields(err.Error()), "_"))
		return err
	}
	fmt.Printf("%ssink path=%s bytes=%d ok=1\n", linePrefix, *path, n)
	return nil
}

// sink listens on the Unix socket path, calls ready, accepts one
// connection and copies it to the file out until the peer shuts down its
// sending side; then it closes the connection, which tells the peer that
// everything arrived. It returns the bytes copied.
func sink(path, out string, timeout time.Duration, ready func()) (int64, error) {
	deadline := time.Now().Add(timeout)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return 0, fmt.Errorf("uds-sink: listen: %w", err)
	}
	defer l.Close()
	// The enclave's supervisor dials this socket after dropping to an
	// unprivileged user (docs/security.md).
	if err := os.Chmod(path, 0o666); err != nil {
		return 0, fmt.Errorf("uds-sink: %w", err)
	}
	if err := l.(*net.UnixListener).SetDeadline(deadline); err != nil {
		return 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, fmt.Errorf("uds-sink: %w", err)
	}
	defer f.Close()
	ready()
	c, err := l.Accept()
	if err != nil {
		return 0, fmt.Errorf("uds-sink: accept: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := io.Copy(f, c)
	if err != nil {
		return n, fmt.Errorf("uds-sink: copy: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("uds-sink: %w", err)
	}
	return n, nil
}

// parseSize parses N, NKiB or NMiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "MiB"):
		mult, s = 1<<20, strings.TrimSuffix(s, "MiB")
	case strings.HasSuffix(s, "KiB"):
		mult, s = 1<<10, strings.TrimSuffix(s, "KiB")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// runAs implements "runas UID GID[,GROUP...] CMD [ARG...]".
func runAs(args []string) error {
	if len(args) < 3 {
		return errors.New("runas: want UID GID[,GROUP...] [VAR=VALUE...] CMD [ARG...]")
	}
	uid, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return fmt.Errorf("runas: uid: %w", err)
	}
	var gids []uint32
	for _, g := range strings.Split(args[1], ",") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return fmt.Errorf("runas: gid: %w", err)
		}
		gids = append(gids, uint32(n))
	}
	env, rest := os.Environ(), args[2:]
	for len(rest) > 1 && strings.Contains(rest[0], "=") {
		env, rest = append(env, rest[0]), rest[1:]
	}
	cmd := exec.Command(rest[0], rest[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: gids[0], Groups: gids[1:]}}
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	return err
}

// Command hostbench is the host (L1) side of nitrovm's nested benchmarks;
// its guest counterpart is test/bench/guestbench.
//
//	hostbench vsock (--uds PATH | --cid N) [--label L] [--mib M] [--runs R] [--wait D]
//
// measures stream throughput to and from a guestbench guest: host→guest
// writes M MiB to guest port 5100 and waits for the guest's byte count;
// guest→host asks port 5101 for M MiB and reads them to EOF. It reaches the
// guest through nitrovm's hybrid vsock Unix socket (--uds, "CONNECT port")
// or through AF_VSOCK (--cid, e.g. QEMU's vhost-vsock), retrying until the
// guest listens (--wait), keeps the best of R runs per direction, prints
//
//	BENCH vsock-L-h2g bytes=B s=S MBps=X
//	BENCH vsock-L-g2h bytes=B s=S MBps=X
//
//	hostbench ready (--uds PATH | --cid N) [--wait D]
//
// waits until the guest serves its ports (an empty transfer to port 5100).
//
//	hostbench stop (--uds PATH | --cid N)
//
// connects to guest port 5102, which makes the guest reboot.
//
//	hostbench collect --listen PATH [--wait D]
//
// listens on the Unix socket PATH (nitrovm maps guest connections to parent
// port P to "<uds>_P"), copies the first connection to stdout and exits.
//
//	hostbench heartbeat [--wait D]
//
// answers the Nitro boot heartbeat on AF_VSOCK port 9000 of the host (CID
// 2) for guests started with bench.parent=2, as nitrovm's supervisor does
// for an enclave, and prints "BENCH heartbeat cid=N" per guest answered,
// until D has passed.
//
//	hostbench qemu-pin --qmp PATH --cpus LIST
//
// confines the vCPU threads of a QEMU started with -S to LIST and starts
// its guest (see runQEMUPin).
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/nitrovm/nitrovm/internal/vsockhost"
)

// Guest ports, as in guestbench, and the host's CID for vhost-vsock guests.
const (
	sinkPort   = 5100
	sourcePort = 5101
	stopPort   = 5102
	hostCID    = 2 // VMADDR_CID_HOST, where vhost-vsock guests reach L1
	chunk      = 256 << 10
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hostbench vsock|ready|stop|collect|heartbeat|qemu-pin [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "vsock":
		err = runVsock(os.Args[2:])
	case "ready":
		err = runReady(os.Args[2:])
	case "stop":
		err = runStop(os.Args[2:])
	case "collect":
		err = runCollect(os.Args[2:])
	case "heartbeat":
		err = runHeartbeat(os.Args[2:])
	case "qemu-pin":
		err = runQEMUPin(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostbench:", err)
		os.Exit(1)
	}
}

// dialer opens a stream to a guest port.
type dialer func(port uint32) (net.Conn, error)

// udsDialer connects through nitrovm's hybrid vsock socket.
func udsDialer(path string) dialer {
	return func(port uint32) (net.Conn, error) {
		c, err := net.Dial("unix", path)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %d\n", port)
		// Read the "OK <port>" line byte-wise so no stream data is buffered.
		var line []byte
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				c.Close()
				return nil, fmt.Errorf("CONNECT %d: %w", port, err)
			}
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if !strings.HasPrefix(string(line), "OK ") {
			c.Close()
			return nil, fmt.Errorf("CONNECT %d: got %q", port, line)
		}
		return c, nil
	}
}

// vsockDialer connects over AF_VSOCK.
func vsockDialer(cid uint32) dialer {
	return func(port uint32) (net.Conn, error) { return vsock.Dial(cid, port, nil) }
}

// dialRetry dials until it succeeds or wait has passed.
func dialRetry(d dialer, port uint32, wait time.Duration) (net.Conn, error) {
	c, _, err := dialCounting(d, port, wait)
	if c != nil {
		return c, nil // err is a refusal that a later dial overcame
	}
	return nil, err
}

// dialCounting is dialRetry that also returns how many dials failed
// before the one that succeeded. Its error is the last failure's, also
// when a connection is returned: then it is the last refusal before the
// dial that succeeded, not a failure of the call.
func dialCounting(d dialer, port uint32, wait time.Duration) (net.Conn, int, error) {
	deadline := time.Now().Add(wait)
	failed, lastErr := 0, error(nil)
	for {
		c, err := d(port)
		if err == nil {
			return c, failed, lastErr
		}
		failed++
		lastErr = err
		if time.Now().After(deadline) {
			return nil, failed, fmt.Errorf("port %d not reachable within %s: %w", port, wait, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// closeWriter is a connection that can shut down its sending side.
type closeWriter interface{ CloseWrite() error }

// guestFlags adds --uds and --cid to fs; the returned func makes the
// dialer once fs is parsed.
func guestFlags(fs *flag.FlagSet) func() (dialer, error) {
	uds := fs.String("uds", "", "nitrovm hybrid vsock Unix socket")
	cid := fs.Uint("cid", 0, "guest CID for AF_VSOCK")
	return func() (dialer, error) {
		switch {
		case *uds != "" && *cid == 0:
			return udsDialer(*uds), nil
		case *uds == "" && *cid != 0:
			return vsockDialer(uint32(*cid)), nil
		}
		return nil, errors.New("give one of --uds and --cid")
	}
}

func runReady(args []string) error {
	fs := flag.NewFlagSet("ready", flag.ExitOnError)
	mk := guestFlags(fs)
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the guest")
	fs.Parse(args)
	d, err := mk()
	if err != nil {
		return err
	}
	c, err := dialRetry(d, sinkPort, *wait)
	if err != nil {
		return err
	}
	defer c.Close()
	return hostToGuest(c, 0)
}

func runStop(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ExitOnError)
	mk := guestFlags(fs)
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the guest")
	fs.Parse(args)
	d, err := mk()
	if err != nil {
		return err
	}
	c, err := dialRetry(d, stopPort, *wait)
	if err != nil {
		return err
	}
	return c.Close()
}

func runVsock(args []string) (err error) {
	fs := flag.NewFlagSet("vsock", flag.ExitOnError)
	mk := guestFlags(fs)
	label := fs.String("label", "guest", "name in the BENCH lines")
	mib := fs.Int("mib", 64, "MiB per transfer")
	runs := fs.Int("runs", 2, "transfers per direction (best kept)")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the guest")
	conns := fs.Int("conns", 0, "then this many connections at once, 64 KiB host->guest each")
	fs.Parse(args)
	d, err := mk()
	if err != nil {
		return err
	}
	defer func() {
		if *conns > 0 {
			if cerr := manyConns(d, *label, *conns); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	size := int64(*mib) << 20
	var errs []error
	for _, dir := range []struct {
		name string
		fn   func(net.Conn, int64) error
		port uint32
	}{{"h2g", hostToGuest, sinkPort}, {"g2h", guestToHost, sourcePort}} {
		best := time.Duration(0)
		for i := 0; i < *runs; i++ {
			c, err := dialRetry(d, dir.port, *wait)
			if err != nil {
				errs = append(errs, err)
				break
			}
			start := time.Now()
			err = dir.fn(c, size)
			took := time.Since(start)
			c.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", dir.name, err))
				break
			}
			if best == 0 || took < best {
				best = took
			}
		}
		if best > 0 {
			fmt.Printf("BENCH vsock-%s-%s bytes=%d s=%.3f MBps=%.1f\n", *label, dir.name, size,
				best.Seconds(), float64(size)/best.Seconds()/1e6)
		}
	}
	return errors.Join(errs...)
}

// manyConns opens n connections to the sink port at once, sends 64 KiB
// on each and waits for all counts; prints BENCH vsock-L-conns with the
// dials that were refused and retried (each retry waits 200 ms, so the
// time is comparable between VMMs only when both retried alike) and the
// last refusal.
func manyConns(d dialer, label string, n int) error {
	type result struct {
		retries int
		refusal error
		err     error
	}
	start := time.Now()
	resc := make(chan result, n)
	for i := 0; i < n; i++ {
		go func() {
			c, retries, lastErr := dialCounting(d, sinkPort, 30*time.Second)
			if c == nil {
				resc <- result{retries: retries, err: lastErr}
				return
			}
			defer c.Close()
			resc <- result{retries, lastErr, hostToGuest(c, 64<<10)}
		}()
	}
	var errs []error
	retries, refusal := 0, "none"
	for i := 0; i < n; i++ {
		r := <-resc
		retries += r.retries
		if r.refusal != nil {
			refusal = strings.Join(strings.Fields(r.refusal.Error()), "_")
		}
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	fmt.Printf("BENCH vsock-%s-conns n=%d failed=%d s=%.3f retries=%d refusal=%s\n", label, n, len(errs), time.Since(start).Seconds(), retries, refusal)
	return errors.Join(errs...)
}

// hostToGuest writes size bytes, shuts down writing and reads the guest's
// 8-byte count.
func hostToGuest(c net.Conn, size int64) error {
	buf := make([]byte, chunk)
	for left := size; left > 0; {
		m := min(int64(len(buf)), left)
		if _, err := c.Write(buf[:m]); err != nil {
			return err
		}
		left -= m
	}
	cw, ok := c.(closeWriter)
	if !ok {
		return errors.New("connection cannot half-close")
	}
	if err := cw.CloseWrite(); err != nil {
		return err
	}
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("read count: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(b[:])); got != size {
		return fmt.Errorf("guest got %d bytes, sent %d", got, size)
	}
	return nil
}

// guestToHost asks for size bytes and reads them to EOF.
func guestToHost(c net.Conn, size int64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(size))
	if _, err := c.Write(b[:]); err != nil {
		return err
	}
	n, err := io.CopyBuffer(io.Discard, c, make([]byte, chunk))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("read %d bytes, want %d", n, size)
	}
	return nil
}

func runCollect(args []string) error {
	fs := flag.NewFlagSet("collect", flag.ExitOnError)
	path := fs.String("listen", "", "Unix socket to listen on")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for a connection")
	fs.Parse(args)
	os.Remove(*path)
	l, err := net.Listen("unix", *path)
	if err != nil {
		return err
	}
	defer l.Close()
	// A supervisor started as root runs as nobody (run-enclave --uid), and
	// connecting to a Unix socket needs write permission on it.
	if err := os.Chmod(*path, 0o666); err != nil {
		return err
	}
	go func() {
		time.Sleep(*wait)
		l.Close()
	}()
	c, err := l.Accept()
	if err != nil {
		return fmt.Errorf("collect: no connection: %w", err)
	}
	defer c.Close()
	_, err = io.Copy(os.Stdout, bufio.NewReader(c))
	return err
}

func runHeartbeat(args []string) error {
	fs := flag.NewFlagSet("heartbeat", flag.ExitOnError)
	wait := fs.Duration("wait", 10*time.Minute, "how long to answer heartbeats")
	fs.Parse(args)
	l, err := vsock.ListenContextID(hostCID, vsockhost.HeartbeatPort, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	timeUp := make(chan struct{})
	time.AfterFunc(*wait, func() {
		close(timeUp)
		l.Close()
	})
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-timeUp:
				return nil
			default:
				return err
			}
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != vsockhost.HeartbeatByte {
				fmt.Printf("BENCH heartbeat-bad from=%v byte=%#x err=%v\n", c.RemoteAddr(), b[0], err)
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				fmt.Printf("BENCH heartbeat-bad from=%v err=%v\n", c.RemoteAddr(), err)
				return
			}
			cid := uint32(0)
			if a, ok := c.RemoteAddr().(*vsock.Addr); ok {
				cid = a.ContextID
			}
			fmt.Printf("BENCH heartbeat cid=%d\n", cid)
		}()
	}
}

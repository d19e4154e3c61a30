// Command guestbench is the /init of nitrovm's benchmark guests (the L2
// enclaves of scripts/bench-vsock.sh and scripts/bench-nsm.sh). It mounts
// /proc, /sys and /dev, sends the Nitro boot heartbeat to CID 3 port 9000
// (bench.parent=CID dials another CID: QEMU's vhost-vsock host is CID 2,
// where hostbench heartbeat answers it) and prints how long its connect
// took, then:
//
//  1. if /dev/nsm exists and bench.nsm=N (default 200) is not 0, it sends N
//     attestation requests and N DescribePCR requests through
//     github.com/hf/nsm, as an enclave application would, and prints
//
//     BENCH nsm-guest-attest n=N s=SECONDS per_s=RATE
//     BENCH nsm-guest-describepcr n=N s=SECONDS per_s=RATE
//
//     on the console and to the parent (CID 3) port 5200, where the host
//     side (test/bench/hostbench collect) picks them up;
//
//  2. it serves the throughput ports (see hostbench): 5100 reads until EOF
//     and answers the byte count as 8 bytes big-endian; 5101 reads an
//     8-byte big-endian length and writes that many bytes; the first
//     connection to 5102 (or bench.timeout=SECONDS, default 600) ends the
//     run and the guest reboots.
//
// Kernel parameters are read from /proc/cmdline.
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hf/nsm"
	"github.com/hf/nsm/request"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// vsock addresses used by the benchmark; hostbench relies on them.
const (
	parentCID     = 3
	heartbeatPort = 9000
	heartbeatByte = 0xB7
	reportPort    = 5200
	sinkPort      = 5100
	sourcePort    = 5101
	stopPort      = 5102
	vmaddrCIDAny  = 0xFFFF_FFFF
	chunk         = 256 << 10
)

func main() {
	mountAll()
	params := kernelParams()
	heartbeat(uint32(intParam(params, "bench.parent", parentCID)))
	n := intParam(params, "bench.nsm", 200)
	if _, err := os.Stat("/dev/nsm"); err == nil && n > 0 {
		report(nsmBench(n))
	}
	timeout := time.Duration(intParam(params, "bench.timeout", 600)) * time.Second
	if err := serve(timeout); err != nil {
		fmt.Println("guestbench:", err)
	}
	fmt.Println("BENCH guest-done")
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {} // init must not exit.
}

// mountAll mounts what the benchmark needs; errors (already mounted) are
// ignored.
func mountAll() {
	for _, m := range [][3]string{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		os.MkdirAll(m[1], 0o755)
		unix.Mount(m[0], m[1], m[2], 0, "")
	}
}

// kernelParams returns the key=value words of the kernel command line.
func kernelParams() map[string]string {
	p := map[string]string{}
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			p[k] = v
		}
	}
	return p
}

// intParam returns params[key] as an integer, or def.
func intParam(params map[string]string, key string, def int) int {
	if v, err := strconv.Atoi(params[key]); err == nil && v >= 0 {
		return v
	}
	return def
}

// heartbeat exchanges the Nitro boot heartbeat byte with port 9000 of cid,
// which nitrovm run-enclave waits for, and prints how long the connect
// took (Linux gives up after 2 s, VSOCK_DEFAULT_CONNECT_TIMEOUT, and AWS's
// init then dies). Failure is only printed.
func heartbeat(cid uint32) {
	start := time.Now()
	c, err := vsock.Dial(cid, heartbeatPort, nil)
	took := time.Since(start).Seconds()
	if err != nil {
		fmt.Printf("guestbench: heartbeat: connect failed after %.3f s: %v\n", took, err)
		return
	}
	fmt.Printf("guestbench: heartbeat: connected in %.3f s\n", took)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Write([]byte{heartbeatByte}); err == nil {
		_, err = c.Read(b[:])
	}
	if err != nil {
		fmt.Println("guestbench: heartbeat:", err)
	}
}

// nsmBench times n attestation and n DescribePCR round trips through
// /dev/nsm and returns the BENCH lines.
func nsmBench(n int) []string {
	sess, err := nsm.OpenDefaultSession()
	if err != nil {
		return []string{"BENCH nsm-guest-error " + oneLine(err.Error())}
	}
	defer sess.Close()
	reqs := []struct {
		name string
		req  request.Request
	}{
		{"attest", &request.Attestation{Nonce: make([]byte, 32), UserData: make([]byte, 64)}},
		{"describepcr", &request.DescribePCR{Index: 0}},
	}
	var lines []string
	for _, r := range reqs {
		start := time.Now()
		for i := 0; i < n; i++ {
			res, err := sess.Send(r.req)
			if err == nil && res.Error != "" {
				err = fmt.Errorf("NSM error %s", res.Error)
			}
			if err != nil {
				return append(lines, fmt.Sprintf("BENCH nsm-guest-error %s: %s", r.name, oneLine(err.Error())))
			}
		}
		s := time.Since(start).Seconds()
		lines = append(lines, fmt.Sprintf("BENCH nsm-guest-%s n=%d s=%.3f per_s=%.1f", r.name, n, s, float64(n)/s))
	}
	return lines
}

// report prints lines and sends them to the parent's port 5200.
func report(lines []string) {
	text := strings.Join(lines, "\n") + "\n"
	fmt.Print(text)
	c, err := vsock.Dial(parentCID, reportPort, nil)
	if err != nil {
		fmt.Println("guestbench: report to parent:", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, text); err != nil {
		fmt.Println("guestbench: report to parent:", err)
	}
}

// serve runs the sink and source ports until a connection to the stop
// port or the timeout.
func serve(timeout time.Duration) error {
	var ls []net.Listener
	for _, port := range []uint32{sinkPort, sourcePort, stopPort} {
		l, err := vsock.ListenContextID(vmaddrCIDAny, port, nil)
		if err != nil {
			return fmt.Errorf("listen on port %d: %w", port, err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	go acceptLoop(ls[0], sink)
	go acceptLoop(ls[1], source)
	stopped := make(chan struct{})
	go func() {
		if c, err := ls[2].Accept(); err == nil {
			c.Close()
		}
		close(stopped)
	}()
	fmt.Println("BENCH guest-ready")
	select {
	case <-stopped:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no stop connection within %s", timeout)
	}
}

// acceptLoop serves each connection of l with fn, one goroutine each.
func acceptLoop(l net.Listener, fn func(net.Conn) error) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if err := fn(c); err != nil {
				fmt.Println("guestbench:", err)
			}
		}()
	}
}

// sink reads c until EOF and answers the byte count.
func sink(c net.Conn) error {
	buf := make([]byte, chunk)
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("sink after %d bytes: %w", n, err)
		}
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	_, err := c.Write(b[:])
	return err
}

// source reads an 8-byte length and writes that many bytes.
func source(c net.Conn) error {
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("source: read length: %w", err)
	}
	left := int64(binary.BigEndian.Uint64(b[:]))
	buf := make([]byte, chunk)
	for left > 0 {
		m := int64(len(buf))
		if left < m {
			m = left
		}
		if _, err := c.Write(buf[:m]); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		left -= m
	}
	return nil
}

// oneLine squeezes s onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

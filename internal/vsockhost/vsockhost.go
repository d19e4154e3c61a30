// Package vsockhost is the host side of an enclave's vsock device: it
// plays the parent instance (CID 3), answers the boot heartbeat on port
// 9000, and connects enclave ports to host programs through Unix sockets
// (Firecracker's "hybrid vsock"), TCP forwards and publishes, and the
// host's own AF_VSOCK sockets.
//
// Assembly (see the README, "vsock: talking to the enclave"):
//
//	host, err := vsockhost.New(opts, logger)       // binds listeners
//	dev, err := vsock.New(cid, host, logger)       // host is the Backend
//	host.Serve(dev)                                // dev is the Connector
//	... start the VM ...
//	d, err := host.WaitHeartbeat(ctx, vmStart)     // "enclave booted in N ms"
//	... on exit: dev.Close(); host.Close()
package vsockhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	mdvsock "github.com/mdlayher/vsock"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
)

// Heartbeat protocol of the Nitro enclave init (aws-nitro-enclaves-sdk
// init.c): the enclave connects to the parent on HeartbeatPort and sends
// HeartbeatByte; the parent echoes it.
const (
	// HeartbeatPort is the parent's vsock port for the boot heartbeat.
	HeartbeatPort = 9000
	// HeartbeatByte is the byte sent and echoed.
	HeartbeatByte = 0xB7
	// DefaultHeartbeatTimeout is used when Options.HeartbeatTimeout is 0
	// (nitro-cli waits at least 180 s).
	DefaultHeartbeatTimeout = 180 * time.Second
	// connectLineTimeout bounds how long a Unix socket client may take to
	// send its "CONNECT P" line.
	connectLineTimeout = 5 * time.Second
	// maxConnectLineBytes bounds the "CONNECT P\n" line.
	maxConnectLineBytes = 64
	// vmaddrCIDLocal is VMADDR_CID_LOCAL (include/uapi/linux/vm_sockets.h):
	// the host's own vsock loopback address.
	vmaddrCIDLocal = 1
)

// ErrNoHeartbeat is returned by WaitHeartbeat when the enclave did not
// send its heartbeat in time (nitro-cli's E36).
var ErrNoHeartbeat = errors.New("vsockhost: enclave sent no heartbeat")

// Forward sends guest connections to the parent's Port to a host TCP
// service at Addr, like the vsock-proxy of the Nitro SDK.
type Forward struct {
	Port uint32 // vsock port on the parent (CID 3).
	Addr string // host:port to dial.
}

// Publish makes the enclave's Port reachable from host TCP clients at
// Listen.
type Publish struct {
	Listen string // host address to listen on, e.g. "127.0.0.1:8443".
	Port   uint32 // vsock port in the enclave.
}

// Options selects the host endpoints.
type Options struct {
	// UDSPath enables hybrid vsock: host programs connect to this Unix
	// socket and write "CONNECT P\n" to reach enclave port P (answered
	// "OK <host port>\n"); a guest connection to parent port P connects to
	// the Unix socket UDSPath+"_"+P if it exists (Firecracker convention).
	UDSPath string
	// Forwards sends guest connections to parent ports to host TCP services.
	Forwards []Forward
	// Publishes exposes enclave ports on host TCP addresses.
	Publishes []Publish
	// AFVsock bridges guest connections to parent port P to a host AF_VSOCK
	// listener on port P (needs the vsock_loopback module on the host).
	AFVsock bool
	// HeartbeatTimeout bounds WaitHeartbeat; 0 means DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
}

// ParseForward parses "P=HOST:PORT" (the --forward flag).
func ParseForward(s string) (Forward, error) {
	ps, addr, ok := strings.Cut(s, "=")
	if !ok {
		return Forward{}, fmt.Errorf("forward %q: want VSOCKPORT=HOST:PORT", s)
	}
	port, err := parseVsockPort(ps)
	if err != nil {
		return Forward{}, fmt.Errorf("forward %q: %w", s, err)
	}
	if port == HeartbeatPort {
		return Forward{}, fmt.Errorf("forward %q: port %d is the heartbeat", s, HeartbeatPort)
	}
	host, tp, err := net.SplitHostPort(addr)
	if err != nil {
		return Forward{}, fmt.Errorf("forward %q: %w", s, err)
	}
	if host == "" {
		return Forward{}, fmt.Errorf("forward %q: empty host", s)
	}
	if _, err := parseTCPPort(tp, false); err != nil {
		return Forward{}, fmt.Errorf("forward %q: %w", s, err)
	}
	return Forward{Port: port, Addr: addr}, nil
}

// ParsePublish parses "HOSTPORT:ENCLAVEPORT" (listening on 127.0.0.1) or
// "ADDR:HOSTPORT:ENCLAVEPORT" (the --publish flag). HOSTPORT 0 picks a
// free port (see Host.PublishAddrs).
func ParsePublish(s string) (Publish, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Publish{}, fmt.Errorf("publish %q: want HOSTPORT:ENCLAVEPORT", s)
	}
	listen, ps := s[:i], s[i+1:]
	port, err := parseVsockPort(ps)
	if err != nil {
		return Publish{}, fmt.Errorf("publish %q: %w", s, err)
	}
	host, hp := "127.0.0.1", listen
	if strings.Contains(listen, ":") {
		if host, hp, err = net.SplitHostPort(listen); err != nil {
			return Publish{}, fmt.Errorf("publish %q: %w", s, err)
		}
	}
	if _, err := parseTCPPort(hp, true); err != nil {
		return Publish{}, fmt.Errorf("publish %q: %w", s, err)
	}
	return Publish{Listen: net.JoinHostPort(host, hp), Port: port}, nil
}

func parseVsockPort(s string) (uint32, error) {
	p, err := strconv.ParseUint(s, 10, 32)
	if err != nil || p == 0xFFFF_FFFF { // VMADDR_PORT_ANY
		return 0, fmt.Errorf("bad vsock port %q", s)
	}
	return uint32(p), nil
}

func parseTCPPort(s string, zeroOK bool) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || (p == 0 && !zeroOK) {
		return 0, fmt.Errorf("bad TCP port %q", s)
	}
	return uint16(p), nil
}

// Host is the parent side of one enclave's vsock device. It implements
// vsock.Backend.
type Host struct {
	opts    Options
	logger  *slog.Logger
	forward map[uint32]string

	ctx    context.Context // cancelled by Close.
	cancel context.CancelFunc
	wg     sync.WaitGroup

	uds       net.Listener   // nil without UDSPath.
	publishes []net.Listener // one per Options.Publishes.

	hb     chan struct{} // closed at the first heartbeat.
	hbOnce sync.Once

	mu     sync.Mutex
	hbAt   time.Time
	served bool
	closed bool
	open   map[io.Closer]struct{} // streams not yet handed to the device.
}

// New binds the listeners of opts. Nothing is accepted before Serve.
func New(opts Options, logger *slog.Logger) (*Host, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.HeartbeatTimeout == 0 {
		opts.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		opts:    opts,
		logger:  logger,
		forward: make(map[uint32]string),
		ctx:     ctx,
		cancel:  cancel,
		hb:      make(chan struct{}),
		open:    make(map[io.Closer]struct{}),
	}
	for _, f := range opts.Forwards {
		if f.Port == HeartbeatPort {
			cancel()
			return nil, fmt.Errorf("vsockhost: forward of port %d: reserved for the heartbeat", f.Port)
		}
		if _, dup := h.forward[f.Port]; dup {
			cancel()
			return nil, fmt.Errorf("vsockhost: port %d forwarded twice", f.Port)
		}
		h.forward[f.Port] = f.Addr
	}
	if opts.UDSPath != "" {
		removeStaleSocket(opts.UDSPath)
		l, err := net.Listen("unix", opts.UDSPath)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("vsockhost: listen on %s: %w", opts.UDSPath, err)
		}
		h.uds = l
	}
	for _, p := range opts.Publishes {
		l, err := net.Listen("tcp", p.Listen)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("vsockhost: publish enclave port %d: %w", p.Port, err)
		}
		h.publishes = append(h.publishes, l)
	}
	return h, nil
}

// removeStaleSocket removes a Unix socket left by an earlier run that no
// one listens on any more.
func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return
	}
	_ = os.Remove(path)
}

// PublishAddrs returns the bound address of each publish, in order.
func (h *Host) PublishAddrs() []net.Addr {
	out := make([]net.Addr, len(h.publishes))
	for i, l := range h.publishes {
		out[i] = l.Addr()
	}
	return out
}

// Serve starts accepting host connections (Unix socket and publishes)
// into the enclave through c, normally the *vsock.Device. It returns at
// once; Close stops it.
func (h *Host) Serve(c vsock.Connector) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("vsockhost: serve after close")
	}
	if h.served {
		return errors.New("vsockhost: serve called twice")
	}
	h.served = true
	if h.uds != nil {
		h.wg.Add(1)
		go h.acceptLoop(h.uds, func(conn net.Conn) { h.serveUDS(c, conn) })
	}
	for i, l := range h.publishes {
		port := h.opts.Publishes[i].Port
		h.wg.Add(1)
		go h.acceptLoop(l, func(conn net.Conn) { h.connectGuest(c, conn, port, nil) })
	}
	return nil
}

func (h *Host) acceptLoop(l net.Listener, handle func(net.Conn)) {
	defer h.wg.Done()
	for {
		conn, err := l.Accept()
		if err != nil {
			if h.ctx.Err() == nil {
				h.logger.Error("vsockhost: accept stopped", "addr", l.Addr(), "err", err)
			}
			return
		}
		if !h.track(conn) {
			conn.Close()
			return
		}
		go func() {
			defer h.wg.Done()
			handle(conn)
		}()
	}
}

// track records a stream not yet owned by the device so Close can end it,
// and counts the goroutine that will handle it (it calls h.wg.Done).
func (h *Host) track(c io.Closer) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.open[c] = struct{}{}
	h.wg.Add(1)
	return true
}

func (h *Host) untrack(c io.Closer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.open, c)
}

// serveUDS reads a hybrid-vsock "CONNECT P\n" line and connects.
func (h *Host) serveUDS(c vsock.Connector, conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(connectLineTimeout))
	port, err := readConnectLine(conn)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		h.logger.Debug("vsockhost: bad hybrid vsock request", "err", err)
		h.untrack(conn)
		conn.Close()
		return
	}
	h.connectGuest(c, conn, port, func(hostPort uint32) error {
		_, err := fmt.Fprintf(conn, "OK %d\n", hostPort)
		return err
	})
}

// readConnectLine reads "CONNECT <port>\n" a byte at a time, so that no
// byte after the line is consumed.
func readConnectLine(r io.Reader) (uint32, error) {
	var line []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("read CONNECT line: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		if len(line) >= maxConnectLineBytes {
			return 0, errors.New("CONNECT line too long")
		}
		line = append(line, b[0])
	}
	s := strings.TrimSuffix(string(line), "\r")
	ps, ok := strings.CutPrefix(s, "CONNECT ")
	if !ok {
		return 0, fmt.Errorf("got %q, want CONNECT <port>", s)
	}
	return parseVsockPort(strings.TrimSpace(ps))
}

// connectGuest hands conn to the device as a connection to enclave port.
func (h *Host) connectGuest(c vsock.Connector, conn net.Conn, port uint32, onConnect func(uint32) error) {
	err := c.ConnectGuest(h.ctx, port, conn, onConnect)
	h.untrack(conn)
	if err != nil {
		h.logger.Debug("vsockhost: connection into the enclave failed", "port", port, "from", conn.RemoteAddr(), "err", err)
		conn.Close()
	}
}

// ConnectHost implements vsock.Backend.ConnectHost: port 9000 is the
// heartbeat, then forwards, then the hybrid vsock Unix socket
// UDSPath_port, then AF_VSOCK; anything else is refused.
func (h *Host) ConnectHost(ctx context.Context, cid uint64, port uint32, srcPort uint32) (vsock.Stream, error) {
	if port == HeartbeatPort {
		return h.heartbeatStream(), nil
	}
	if addr, ok := h.forward[port]; ok {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("vsockhost: forward port %d: %w", port, err)
		}
		return conn, nil
	}
	if h.opts.UDSPath != "" {
		path := fmt.Sprintf("%s_%d", h.opts.UDSPath, port)
		if _, err := os.Stat(path); err == nil {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, fmt.Errorf("vsockhost: port %d: %w", port, err)
			}
			return conn, nil
		}
	}
	if h.opts.AFVsock {
		conn, err := mdvsock.DialContext(ctx, vmaddrCIDLocal, port, nil)
		if err != nil {
			return nil, fmt.Errorf("vsockhost: AF_VSOCK port %d: %w", port, err)
		}
		return conn, nil
	}
	return nil, fmt.Errorf("vsockhost: no endpoint for parent port %d", port)
}

// heartbeatStream returns a stream that echoes the heartbeat byte.
func (h *Host) heartbeatStream() vsock.Stream {
	dev, us := net.Pipe()
	if !h.track(us) {
		us.Close()
		return dev
	}
	go func() {
		defer h.wg.Done()
		defer h.untrack(us)
		defer us.Close()
		var b [1]byte
		if _, err := io.ReadFull(us, b[:]); err != nil {
			return
		}
		if b[0] != HeartbeatByte {
			h.logger.Warn("vsockhost: bad heartbeat byte", "got", b[0], "want", HeartbeatByte)
			return
		}
		if _, err := us.Write(b[:]); err != nil {
			return
		}
		h.hbOnce.Do(func() {
			h.mu.Lock()
			h.hbAt = time.Now()
			h.mu.Unlock()
			close(h.hb)
		})
		_, _ = io.Copy(io.Discard, us) // until the enclave closes.
	}()
	return dev
}

// Heartbeat returns a channel closed when the enclave's first heartbeat
// was answered.
func (h *Host) Heartbeat() <-chan struct{} { return h.hb }

// HeartbeatAt returns when the first heartbeat was answered, and false if
// none was yet. Subtract the VM's start time for "enclave booted in N ms".
func (h *Host) HeartbeatAt() (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hbAt, !h.hbAt.IsZero()
}

// WaitHeartbeat waits for the heartbeat for at most
// Options.HeartbeatTimeout and returns the time from start (when the VM
// started) to the heartbeat. It returns ErrNoHeartbeat on timeout.
func (h *Host) WaitHeartbeat(ctx context.Context, start time.Time) (time.Duration, error) {
	t := time.NewTimer(h.opts.HeartbeatTimeout)
	defer t.Stop()
	select {
	case <-h.hb:
	case <-t.C:
		return 0, fmt.Errorf("%w on port %d within %s", ErrNoHeartbeat, HeartbeatPort, h.opts.HeartbeatTimeout)
	case <-ctx.Done():
		return 0, fmt.Errorf("vsockhost: waiting for heartbeat: %w", ctx.Err())
	}
	h.mu.Lock()
	d := h.hbAt.Sub(start)
	h.mu.Unlock()
	h.logger.Info("enclave booted", "ms", d.Milliseconds())
	return d, nil
}

// Close stops the listeners, removes the Unix socket and closes every
// stream not yet handed to the device. Streams owned by the device are
// closed by closing the device.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	open := h.open
	h.open = nil
	h.mu.Unlock()
	h.cancel()
	var errs []error
	if h.uds != nil {
		errs = append(errs, h.uds.Close()) // also unlinks the socket file.
	}
	for _, l := range h.publishes {
		errs = append(errs, l.Close())
	}
	for c := range open {
		c.Close()
	}
	h.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vsockhost: close: %w", err)
	}
	return nil
}

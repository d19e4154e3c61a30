package vsocktest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/virtio/vsock"
)

// ErrRefused is returned by Dial when the host answers with a reset.
var ErrRefused = errors.New("vsocktest: connection refused")

// ErrReset is returned by Read and Write after the host reset the
// connection.
var ErrReset = errors.New("vsocktest: connection reset")

// Addr is a vsock address.
type Addr struct {
	CID  uint64
	Port uint32
}

// Network implements net.Addr.
func (a Addr) Network() string { return "vsock" }

// String implements net.Addr.
func (a Addr) String() string { return fmt.Sprintf("vm(%d):%d", a.CID, a.Port) }

// Conn is a guest stream socket. It implements net.Conn (deadlines are
// not supported) and has CloseWrite.
type Conn struct {
	g    *Guest
	key  connKey
	cond *sync.Cond // on g.mu.

	connected  chan error // Dial only.
	rx         []byte     // received bytes; rx[rxOff:] not yet read.
	rxOff      int
	fwdCnt     uint32 // bytes the application consumed.
	lastFwd    uint32 // fwdCnt last told to the device.
	rxCnt      uint32 // bytes received.
	txCnt      uint32
	peerBuf    uint32
	peerFwdCnt uint32
	peerShut   uint32
	localShut  uint32
	err        error // reset or guest closed.
}

func (g *Guest) newConn(key connKey) *Conn {
	c := &Conn{g: g, key: key, cond: sync.NewCond(&g.mu)}
	g.conns[key] = c
	return c
}

func (c *Conn) hdr(op uint16) vsock.Header {
	return vsock.Header{DstCID: c.key.peerCID, SrcPort: c.key.localPort, DstPort: c.key.peerPort, Op: op, BufAlloc: ConnBufBytes, FwdCnt: c.fwdCnt}
}

// fail ends the connection with err. Preconditions: g.mu held.
func (c *Conn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	if c.connected != nil {
		select {
		case c.connected <- err:
		default:
		}
	}
	delete(c.g.conns, c.key)
	c.cond.Broadcast()
}

// Dial connects to cid:port (3 for the parent).
func (g *Guest) Dial(cid uint64, port uint32) (*Conn, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, errors.New("vsocktest: guest closed")
	}
	key := connKey{peerCID: cid, peerPort: port}
	for {
		key.localPort = g.nextPort
		g.nextPort++
		if g.conns[key] == nil {
			break
		}
	}
	c := g.newConn(key)
	connected := make(chan error, 1)
	c.connected = connected
	h := c.hdr(vsock.VIRTIO_VSOCK_OP_REQUEST)
	g.mu.Unlock()
	if err := g.send(c, h, nil); err != nil {
		return nil, err
	}
	select {
	case err := <-connected:
		if err != nil {
			return nil, fmt.Errorf("vsocktest: dial %d:%d: %w", cid, port, err)
		}
		return c, nil
	case <-time.After(5 * time.Second):
		g.mu.Lock()
		c.fail(errors.New("timeout"))
		g.mu.Unlock()
		return nil, fmt.Errorf("vsocktest: dial %d:%d: timeout", cid, port)
	}
}

// Listener accepts connections to a guest port.
type Listener struct {
	g      *Guest
	port   uint32
	accept chan *Conn
	closed bool
}

// Listen listens on guest port port.
func (g *Guest) Listen(port uint32) (*Listener, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.listeners[port] != nil {
		return nil, fmt.Errorf("vsocktest: port %d in use", port)
	}
	l := &Listener{g: g, port: port, accept: make(chan *Conn, 128)}
	g.listeners[port] = l
	return l, nil
}

// Accept implements net.Listener.Accept.
func (l *Listener) Accept() (net.Conn, error) {
	c, ok := <-l.accept
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// Close implements net.Listener.Close.
func (l *Listener) Close() error {
	l.g.mu.Lock()
	defer l.g.mu.Unlock()
	l.closeLocked()
	return nil
}

func (l *Listener) closeLocked() {
	if !l.closed {
		l.closed = true
		delete(l.g.listeners, l.port)
		close(l.accept)
	}
}

// Addr implements net.Listener.Addr.
func (l *Listener) Addr() net.Addr { return Addr{l.g.cid, l.port} }

// receive handles one packet from the device (rx goroutine).
func (g *Guest) receive(b []byte) {
	h, err := vsock.DecodeHeader(b)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil || int(h.Len) != len(b)-vsock.HeaderSize {
		g.violate("bad rx packet: %v (len %d)", err, len(b))
		return
	}
	if h.DstCID != g.cid {
		g.violate("packet for CID %d: %v", h.DstCID, h)
		return
	}
	payload := b[vsock.HeaderSize:]
	key := connKey{peerCID: h.SrcCID, peerPort: h.SrcPort, localPort: h.DstPort}
	c := g.conns[key]
	if c == nil {
		switch h.Op {
		case vsock.VIRTIO_VSOCK_OP_REQUEST:
			l := g.listeners[h.DstPort]
			if l == nil || len(l.accept) == cap(l.accept) {
				go g.reply(h, vsock.VIRTIO_VSOCK_OP_RST)
				return
			}
			c = g.newConn(key)
			c.peerBuf, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
			resp := c.hdr(vsock.VIRTIO_VSOCK_OP_RESPONSE)
			// As in Linux, the socket is accepted only after the response
			// went out, so the application cannot send data before it.
			go func() {
				err := g.send(c, resp, nil)
				g.mu.Lock()
				defer g.mu.Unlock()
				if err != nil || l.closed || len(l.accept) == cap(l.accept) {
					c.fail(ErrReset)
					return
				}
				l.accept <- c
			}()
		case vsock.VIRTIO_VSOCK_OP_RST:
		default:
			go g.reply(h, vsock.VIRTIO_VSOCK_OP_RST)
		}
		return
	}
	c.peerBuf, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	c.cond.Broadcast()
	switch h.Op {
	case vsock.VIRTIO_VSOCK_OP_RESPONSE:
		if c.connected == nil {
			g.violate("unexpected response %v", h)
			return
		}
		c.connected <- nil
		c.connected = nil
	case vsock.VIRTIO_VSOCK_OP_RST:
		if c.connected != nil {
			c.fail(ErrRefused)
			return
		}
		c.fail(ErrReset)
	case vsock.VIRTIO_VSOCK_OP_RW:
		if c.rxCnt+uint32(len(payload))-c.fwdCnt > ConnBufBytes {
			g.violate("device exceeded credit on %v: %d buffered + %d", key, c.rxCnt-c.fwdCnt, len(payload))
		}
		if c.localShut&vsock.VIRTIO_VSOCK_SHUTDOWN_RCV != 0 {
			c.fwdCnt += uint32(len(payload)) // discarded.
		} else {
			// Reuse the consumed front before growing, so a steady
			// stream allocates nothing (the credit bounds rx).
			if c.rxOff > 0 && len(c.rx)+len(payload) > cap(c.rx) {
				c.rx = c.rx[:copy(c.rx, c.rx[c.rxOff:])]
				c.rxOff = 0
			}
			c.rx = append(c.rx, payload...)
		}
		c.rxCnt += uint32(len(payload))
	case vsock.VIRTIO_VSOCK_OP_SHUTDOWN:
		c.peerShut |= h.Flags
		if c.peerShut == 3 && c.localShut == 3 {
			c.fail(io.EOF)
			go g.send(c, c.hdr(vsock.VIRTIO_VSOCK_OP_RST), nil)
		}
	case vsock.VIRTIO_VSOCK_OP_CREDIT_UPDATE:
	case vsock.VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		go g.send(c, c.hdr(vsock.VIRTIO_VSOCK_OP_CREDIT_UPDATE), nil)
	default:
		g.violate("unexpected op on connection: %v", h)
	}
}

// Read implements io.Reader.
func (c *Conn) Read(p []byte) (int, error) {
	g := c.g
	g.mu.Lock()
	for len(c.rx) == c.rxOff && c.err == nil && c.peerShut&vsock.VIRTIO_VSOCK_SHUTDOWN_SEND == 0 {
		c.cond.Wait()
	}
	if len(c.rx) == c.rxOff {
		err := c.err
		g.mu.Unlock()
		if err == nil || err == io.EOF {
			return 0, io.EOF
		}
		return 0, err
	}
	n := copy(p, c.rx[c.rxOff:])
	c.rxOff += n
	if c.rxOff == len(c.rx) {
		c.rx, c.rxOff = c.rx[:0], 0
	}
	c.fwdCnt += uint32(n)
	var upd *vsock.Header
	if c.fwdCnt-c.lastFwd >= ConnBufBytes/4 && c.err == nil {
		h := c.hdr(vsock.VIRTIO_VSOCK_OP_CREDIT_UPDATE)
		upd = &h
		c.lastFwd = c.fwdCnt
	}
	g.mu.Unlock()
	if upd != nil {
		if err := g.send(c, *upd, nil); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Write implements io.Writer, within the device's credit.
func (c *Conn) Write(p []byte) (int, error) {
	g := c.g
	done := 0
	for done < len(p) {
		g.mu.Lock()
		var free int64
		for {
			if c.err != nil {
				err := c.err
				g.mu.Unlock()
				return done, err
			}
			if c.localShut&vsock.VIRTIO_VSOCK_SHUTDOWN_SEND != 0 {
				g.mu.Unlock()
				return done, net.ErrClosed
			}
			// As Linux 6.12.y: no more in flight than our own buffer
			// either (virtio_transport_tx_buf_size).
			free = int64(min(c.peerBuf, ConnBufBytes)) - int64(c.txCnt-c.peerFwdCnt)
			if free > 0 {
				break
			}
			c.cond.Wait()
		}
		n := min(int(free), len(p)-done, vsock.MaxPacketPayloadBytes)
		c.txCnt += uint32(n)
		c.lastFwd = c.fwdCnt
		h := c.hdr(vsock.VIRTIO_VSOCK_OP_RW)
		g.mu.Unlock()
		if err := g.send(c, h, p[done:done+n]); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (c *Conn) shutdown(flags uint32) error {
	g := c.g
	g.mu.Lock()
	if c.err != nil {
		g.mu.Unlock()
		return nil
	}
	c.localShut |= flags
	h := c.hdr(vsock.VIRTIO_VSOCK_OP_SHUTDOWN)
	h.Flags = c.localShut
	if c.localShut == 3 && c.peerShut == 3 {
		c.fail(io.EOF)
		h = c.hdr(vsock.VIRTIO_VSOCK_OP_RST)
	}
	g.mu.Unlock()
	return g.send(c, h, nil)
}

// CloseWrite shuts down the sending side (the host reads EOF).
func (c *Conn) CloseWrite() error { return c.shutdown(vsock.VIRTIO_VSOCK_SHUTDOWN_SEND) }

// Close shuts down both sides; the device answers with a reset.
func (c *Conn) Close() error {
	err := c.shutdown(3)
	c.g.mu.Lock()
	c.rx, c.rxOff = nil, 0
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.cond.Broadcast()
	c.g.mu.Unlock()
	return err
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return Addr{c.g.cid, c.key.localPort} }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return Addr{c.key.peerCID, c.key.peerPort} }

// SetDeadline implements net.Conn; deadlines are not supported.
func (c *Conn) SetDeadline(time.Time) error { return errors.ErrUnsupported }

// SetReadDeadline implements net.Conn; deadlines are not supported.
func (c *Conn) SetReadDeadline(time.Time) error { return errors.ErrUnsupported }

// SetWriteDeadline implements net.Conn; deadlines are not supported.
func (c *Conn) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }

package enclave

import (
	"io"
	"sync"
)

// consoleHistoryBytes is how much recent console output a newly attached
// console client is shown first.
const consoleHistoryBytes = 64 << 10

// consoleClientLagBytes is how much output a console client may lag behind
// before it is disconnected, so that a slow client never stalls the guest's
// serial port. The bound is on bytes, not writes: a client that reads a
// little slower than a burst (a long attestation line printed at emulation
// speed) must not lose it.
const consoleClientLagBytes = 4 << 20

// consoleHub fans the guest's console output out to a log file, a history
// buffer and attached console clients.
type consoleHub struct {
	mu      sync.Mutex
	log     io.Writer // may be nil
	history []byte
	clients map[*consoleClient]struct{}
	closed  bool
}

// consoleClient is one attached console reader; its pending output is
// guarded by the hub's mutex.
type consoleClient struct {
	hub     *consoleHub
	pending []byte
	done    bool          // no more output will be added
	wake    chan struct{} // 1-buffered: pending or done changed
}

func newConsoleHub(log io.Writer) *consoleHub {
	return &consoleHub{log: log, clients: map[*consoleClient]struct{}{}}
}

// Write implements io.Writer for the VM's console. It never blocks on
// clients.
func (h *consoleHub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log != nil {
		// A full disk must not stop the guest: the history and clients
		// still get the output.
		h.log.Write(p)
	}
	// The history may grow to twice its size before the oldest half is
	// dropped, so each byte is moved at most once (not 64 KiB per write).
	tail := p[max(len(p)-consoleHistoryBytes, 0):]
	if len(h.history)+len(tail) > 2*consoleHistoryBytes {
		keep := min(consoleHistoryBytes-len(tail), len(h.history))
		h.history = append(h.history[:0], h.history[len(h.history)-keep:]...)
	}
	h.history = append(h.history, tail...)
	for c := range h.clients {
		if len(c.pending)+len(p) > consoleClientLagBytes {
			c.finishLocked() // too slow: what it has is delivered, then EOF
			continue
		}
		c.pending = append(c.pending, p...)
		c.notify()
	}
	return len(p), nil
}

// subscribe attaches a client whose first output is the history so far.
func (h *consoleHub) subscribe() *consoleClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	hist := h.history[max(len(h.history)-consoleHistoryBytes, 0):]
	c := &consoleClient{hub: h, pending: append([]byte(nil), hist...), wake: make(chan struct{}, 1)}
	if h.closed {
		c.done = true
	} else {
		h.clients[c] = struct{}{}
	}
	c.notify()
	return c
}

// close ends all subscriptions once their pending output is read.
func (h *consoleHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		c.finishLocked()
	}
}

// next blocks until the client has output and returns it; ok is false once
// the client is finished and everything was returned.
func (c *consoleClient) next() (b []byte, ok bool) {
	for {
		c.hub.mu.Lock()
		b, c.pending = c.pending, nil
		done := c.done
		c.hub.mu.Unlock()
		if len(b) > 0 {
			return b, true
		}
		if done {
			return nil, false
		}
		<-c.wake
	}
}

// unsubscribe detaches c; further output is not kept for it.
func (c *consoleClient) unsubscribe() {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	c.finishLocked()
	c.pending = nil
}

// finishLocked detaches c from its hub; the hub's mutex must be held.
func (c *consoleClient) finishLocked() {
	delete(c.hub.clients, c)
	c.done = true
	c.notify()
}

func (c *consoleClient) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

package enclave

import (
	"io"
	"sync"
)

// consoleHistoryBytes is how much recent console output a newly attached
// console client is shown first.
const consoleHistoryBytes = 64 << 10

// consoleSubscriberQueue is how many pending writes a console client may
// lag behind before it is disconnected, so a slow client never stalls the
// guest's serial port.
const consoleSubscriberQueue = 1024

// consoleHub fans the guest's console output out to a log file, a history
// buffer and attached console clients.
type consoleHub struct {
	mu      sync.Mutex
	log     io.Writer // may be nil
	history []byte
	subs    map[chan []byte]struct{}
	closed  bool
}

func newConsoleHub(log io.Writer) *consoleHub {
	return &consoleHub{log: log, subs: map[chan []byte]struct{}{}}
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
	h.history = append(h.history, p...)
	if over := len(h.history) - consoleHistoryBytes; over > 0 {
		h.history = append(h.history[:0], h.history[over:]...)
	}
	for ch := range h.subs {
		b := append([]byte(nil), p...)
		select {
		case ch <- b:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
	return len(p), nil
}

// subscribe returns the history so far and a channel of further output,
// closed when the hub closes or the client falls behind.
func (h *consoleHub) subscribe() ([]byte, chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan []byte, consoleSubscriberQueue)
	if h.closed {
		close(ch)
	} else {
		h.subs[ch] = struct{}{}
	}
	return append([]byte(nil), h.history...), ch
}

// unsubscribe detaches ch if it is still attached.
func (h *consoleHub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// close ends all subscriptions.
func (h *consoleHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

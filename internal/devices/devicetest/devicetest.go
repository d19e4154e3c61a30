// Package devicetest provides fakes for testing device models without
// /dev/kvm: byte-slice guest memory, an httptest-style interrupt recorder,
// and a guest-side virtio-mmio driver that negotiates with a transport
// through its registers and drives split virtqueues as Linux would.
package devicetest

import (
	"errors"
	"sync"
	"time"

	"github.com/nitrovm/nitrovm/internal/memory"
)

// NewMemory returns size bytes of zeroed guest RAM at guest-physical
// address 0, backed by a Go byte slice. It panics if size does not fit in
// an int (a test bug).
func NewMemory(size uint64) *memory.Guest {
	if size > uint64(int(^uint(0)>>1)) {
		panic("devicetest: memory size too large")
	}
	g, err := memory.New(memory.Region{GPA: 0, Data: make([]byte, size)})
	if err != nil {
		panic("devicetest: " + err.Error())
	}
	return g
}

// IRQRecorder is a devices.Interrupt that records each Trigger for the test
// to inspect. The zero value is ready to use; it is safe for concurrent use.
type IRQRecorder struct {
	mu      sync.Mutex
	count   int
	err     error
	changed chan struct{} // closed and replaced on every Trigger.
}

// Trigger implements devices.Interrupt.Trigger: it counts the call and
// returns the error set by SetError, if any.
func (r *IRQRecorder) Trigger() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	return r.err
}

// SetError makes later Triggers return err (still counting them).
func (r *IRQRecorder) SetError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// Count returns the number of Triggers so far.
func (r *IRQRecorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// WaitCount waits until at least n Triggers were recorded or timeout
// passes, and reports whether the count was reached.
func (r *IRQRecorder) WaitCount(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if r.count >= n {
			r.mu.Unlock()
			return true
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return r.Count() >= n
		}
	}
}

// ErrTimeout is returned by Driver.WaitUsed when the device did not answer.
var ErrTimeout = errors.New("devicetest: timed out waiting for used buffers")

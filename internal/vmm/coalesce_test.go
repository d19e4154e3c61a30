package vmm

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/devices/serial"
	"github.com/nitrovm/nitrovm/internal/kvm"
)

// queueTHR appends port writes of s to 0x3f8 to a 4 KiB ring page laid out
// as KVM does (struct kvm_coalesced_mmio_ring, 170 entries).
func queueTHR(page []byte, s string) {
	le := binary.LittleEndian
	last := le.Uint32(page[4:])
	for _, b := range []byte(s) {
		e := page[8+int(last)*24:]
		le.PutUint64(e, 0x3f8)
		le.PutUint32(e[8:], 1)
		le.PutUint32(e[12:], 1)
		e[16] = b
		last = (last + 1) % 170
	}
	le.PutUint32(page[4:], last)
}

// TestCoalescerReplays checks that queued THR writes reach the console in
// order when a vCPU drains before an exit, and from the poll timer when no
// exit comes (a guest that prints and spins), and that nothing is replayed
// after stop.
func TestCoalescerReplays(t *testing.T) {
	page := make([]byte, 4096)
	ring, err := kvm.NewCoalescedRing(page)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chanWriter, 16)
	con := &consoleScanner{out: out}
	var pio bus
	if err := pio.add(0x3f8, 8, serial.New(con, nil)); err != nil {
		t.Fatal(err)
	}
	c := &coalescer{ring: ring, pio: &pio}
	queueTHR(page, "ab\n")
	c.drain() // as before an exit
	if got := <-out; got != "ab\n" {
		t.Errorf("drained before an exit: got %q, want %q", got, "ab\n")
	}
	c.start()
	queueTHR(page, "spin\n")
	select {
	case got := <-out:
		if got != "spin\n" {
			t.Errorf("drained by the timer: got %q, want %q", got, "spin\n")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued writes not replayed without an exit")
	}
	c.stop()
	queueTHR(page, "late\n")
	c.drain()
	if len(out) != 0 || !bytes.Equal(page[0:4], []byte{8, 0, 0, 0}) {
		t.Errorf("replayed after stop: %d writes, first index %v", len(out), page[0:4])
	}
}

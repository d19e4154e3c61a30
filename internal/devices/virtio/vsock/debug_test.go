package vsock

import (
	"strings"
	"testing"
	"time"
)

// TestSnapshotShowsCreditStall checks a connection whose guest granted no
// more credit shows up with credit 0 and its data queued.
func TestSnapshotShowsCreditStall(t *testing.T) {
	const window = 10000
	g, _ := fillGuestWindow(t, window, time.Second)
	conns, _, _ := g.m.snapshot()
	if len(conns) != 1 {
		t.Fatalf("got %d connections, want 1", len(conns))
	}
	s := conns[0]
	if s.GuestPort != 77 || s.HostPort != 9 || s.State != "established" || s.Credit != 0 || s.TxCnt != window || s.PeerBufAlloc != window {
		t.Errorf("got %+v, want port 77<->9 established, credit 0, tx_cnt %d", s, window)
	}
	line := formatConnStats(s)
	for _, want := range []string{"vsock conn 3:9 <-> guest:77 established", "tx_cnt=10000 peer_buf_alloc=10000 peer_fwd_cnt=0 in_flight=10000 credit=0"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

// TestPumpsWakeForTheirOwnWork checks that a transfer toward the guest
// does not wake the connection's writer, which has nothing to write: one
// condition shared by the reader and the writer woke both for every
// packet sent to the guest and every packet received from it.
func TestPumpsWakeForTheirOwnWork(t *testing.T) {
	const window = 10000
	g, c := fillGuestWindow(t, window, 5*time.Second)
	for total := len(c.rx); total < 5*window; total += len(c.rx) {
		c.fwdCnt += uint32(len(c.rx))
		c.rx = nil
		g.send(c.hdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE), nil)
		c.handle(g.recv())
	}
	conns, _, _ := g.m.snapshot()
	if len(conns) != 1 {
		t.Fatalf("got %d connections, want 1", len(conns))
	}
	s := conns[0]
	if s.TxCnt != 5*window {
		t.Fatalf("tx_cnt %d, want %d", s.TxCnt, 5*window)
	}
	if s.WriterWakes != 0 {
		t.Errorf("the writer woke %d times during a transfer toward the guest, want 0", s.WriterWakes)
	}
	if s.ReaderWakes+s.DirectReads == 0 {
		t.Error("neither the reader woke nor the worker read for it, but it had to wait for the guest's credit")
	}
	if line := formatConnStats(s); !strings.Contains(line, "writer_wakes=0") || !strings.Contains(line, "direct_reads=") {
		t.Errorf("%q lacks writer_wakes=0 or direct_reads", line)
	}
}

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

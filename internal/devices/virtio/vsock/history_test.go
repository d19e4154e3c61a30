package vsock

import (
	"strings"
	"testing"
	"time"
)

func TestControlHistory(t *testing.T) {
	var r controlHistory
	now := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	if got := r.lines(now); len(got) != 0 {
		t.Fatalf("empty history: %q", got)
	}
	for i := range historyLen + 4 {
		h := Header{SrcCID: testGuestCID, DstCID: ParentCID, SrcPort: uint32(1000 + i), DstPort: 9000, Op: VIRTIO_VSOCK_OP_REQUEST}
		r.add(now.Add(time.Duration(i-historyLen-4)*time.Second), h, false, time.Time{})
	}
	// The guest's last REQUEST, read 1.7 s after its kick.
	at := now.Add(-750 * time.Millisecond)
	r.add(at, Header{SrcCID: testGuestCID, DstCID: ParentCID, SrcPort: 2000, DstPort: 9000, Op: VIRTIO_VSOCK_OP_REQUEST}, false, at.Add(-1700*time.Millisecond))
	r.add(now.Add(-500*time.Millisecond), Header{SrcCID: ParentCID, DstCID: testGuestCID, SrcPort: 9000, DstPort: 1019, Op: VIRTIO_VSOCK_OP_SHUTDOWN, Flags: shutdownBoth}, true, time.Time{})
	r.add(now, Header{SrcCID: ParentCID, DstCID: testGuestCID, SrcPort: 9000, DstPort: 1019, Op: 42}, true, time.Time{})
	got := r.lines(now)
	if len(got) != historyLen {
		t.Fatalf("got %d lines, want the last %d", len(got), historyLen)
	}
	// The oldest kept: 23 added, so the first is REQUEST number 7 (port 1007), 13 s old.
	for i, want := range map[int]string{
		0:              "vsock packet 13.000s ago: guest -> host REQUEST 3:9000 <-> guest:1007",
		historyLen - 4: "vsock packet 1.000s ago: guest -> host REQUEST 3:9000 <-> guest:1019",
		historyLen - 3: "vsock packet 0.750s ago: guest -> host REQUEST 3:9000 <-> guest:2000 (read 1.700s after the guest's last kick)",
		historyLen - 2: "vsock packet 0.500s ago: host -> guest SHUTDOWN 3:9000 <-> guest:1019 flags=0x3",
		historyLen - 1: "vsock packet 0.000s ago: host -> guest OP(42) 3:9000 <-> guest:1019",
	} {
		if got[i] != want {
			t.Errorf("line %d: got %q, want %q", i, got[i], want)
		}
	}
}

// TestHistoryRecordsControlPackets checks a refused connection leaves its
// REQUEST and RST in the state dump's history, an accepted one its REQUEST
// and RESPONSE, and data packets nothing.
func TestHistoryRecordsControlPackets(t *testing.T) {
	b := newTestBackend()
	b.handle(8000, echo)
	g := newTestGuest(t, b)
	g.send(Header{DstCID: ParentCID, SrcPort: 1234, DstPort: 5555, Op: VIRTIO_VSOCK_OP_REQUEST, BufAlloc: 4096}, nil)
	g.expectOp(VIRTIO_VSOCK_OP_RST)
	c := g.dial(8000, 4000)
	c.write([]byte("ping"))
	c.readN(4)
	// Through DebugState, as a VMM state dump reads it.
	joined := strings.Join((&Device{guestCID: testGuestCID, m: g.m}).DebugState(), "\n")
	for _, want := range []string{
		"guest -> host REQUEST 3:5555 <-> guest:1234",
		"host -> guest RST 3:5555 <-> guest:1234",
		"guest -> host REQUEST 3:8000 <-> guest:4000",
		"host -> guest RESPONSE 3:8000 <-> guest:4000",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("history lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, " RW ") || strings.Contains(joined, "CREDIT_UPDATE") {
		t.Errorf("history records data or credit updates:\n%s", joined)
	}
}

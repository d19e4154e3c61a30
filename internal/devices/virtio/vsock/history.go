package vsock

import (
	"fmt"
	"time"
)

// historyLen is how many control packets the device remembers.
const historyLen = 16

// controlRecord is one control packet (anything but RW and CREDIT_UPDATE)
// that crossed the device, for a VMM state dump: when a connection failed
// to open, the dump shows who waited for whom (a late RESPONSE, a guest
// that had given up, ...).
type controlRecord struct {
	at        time.Time
	toGuest   bool
	op        uint16
	hostCID   uint64
	hostPort  uint32
	guestPort uint32
	flags     uint32
	kickAt    time.Time // from the guest: its last tx kick before the device read it; zero if unknown.
}

// controlHistory is a ring of the last historyLen control packets.
// It allocates nothing once made.
type controlHistory struct {
	recs [historyLen]controlRecord
	next int // index of the next record to write.
	n    int // records written, at most historyLen.
}

// isControl reports whether op is recorded.
func isControl(op uint16) bool {
	return op != VIRTIO_VSOCK_OP_RW && op != VIRTIO_VSOCK_OP_CREDIT_UPDATE
}

// add records h, sent to the guest (toGuest) or by it, at now; kickAt is
// the guest's last tx kick before a packet from it was read (zero if
// unknown).
func (r *controlHistory) add(now time.Time, h Header, toGuest bool, kickAt time.Time) {
	rec := controlRecord{at: now, toGuest: toGuest, op: h.Op, flags: h.Flags, kickAt: kickAt}
	if toGuest {
		rec.hostCID, rec.hostPort, rec.guestPort = h.SrcCID, h.SrcPort, h.DstPort
	} else {
		rec.hostCID, rec.hostPort, rec.guestPort = h.DstCID, h.DstPort, h.SrcPort
	}
	r.recs[r.next] = rec
	r.next = (r.next + 1) % historyLen
	r.n = min(r.n+1, historyLen)
}

// lines describes the records, oldest first, with their age at now.
func (r *controlHistory) lines(now time.Time) []string {
	out := make([]string, 0, r.n)
	for i := range r.n {
		rec := r.recs[(r.next-r.n+i+historyLen)%historyLen]
		dir := "guest -> host"
		if rec.toGuest {
			dir = "host -> guest"
		}
		s := fmt.Sprintf("vsock packet %.3fs ago: %s %s %d:%d <-> guest:%d", now.Sub(rec.at).Seconds(), dir, opName(rec.op), rec.hostCID, rec.hostPort, rec.guestPort)
		if rec.op == VIRTIO_VSOCK_OP_SHUTDOWN {
			s += fmt.Sprintf(" flags=%#x", rec.flags)
		}
		if !rec.toGuest && !rec.kickAt.IsZero() {
			// How long the kick waited for the device: a packet the
			// guest had given up on by then was late on the host side.
			s += fmt.Sprintf(" (read %.3fs after the guest's last kick)", rec.at.Sub(rec.kickAt).Seconds())
		}
		out = append(out, s)
	}
	return out
}

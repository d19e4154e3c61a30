package vsock

import (
	"fmt"
	"sort"
	"time"
)

// ConnStats is a snapshot of one connection, for diagnosing a stalled
// transfer: whether the host side is out of credit (Credit 0 with data
// queued toward the guest) or the guest is (InQueued bytes not yet
// written to the stream, FwdCnt ahead of LastFwdSent).
type ConnStats struct {
	HostCID   uint64
	HostPort  uint32
	GuestPort uint32
	State     string
	// Guest to host.
	InQueued    int    // bytes received from the guest, not yet written to the stream.
	RxCnt       uint32 // bytes received from the guest.
	FwdCnt      uint32 // bytes written to the stream.
	LastFwdSent uint32 // FwdCnt last told to the guest (its credit is based on it).
	// Host to guest.
	OutQueued    int    // bytes read from the stream, waiting for rx buffers.
	TxCnt        uint32 // bytes sent to the guest.
	PeerBufAlloc uint32 // the guest's receive buffer.
	PeerFwdCnt   uint32 // bytes the guest says it consumed.
	Credit       int    // bytes the host may still queue toward the guest.
	Pending      bool   // a packet waits for an rx buffer.
	Queued       bool   // in the ready list.
	ReaderEOF    bool
	WriterDone   bool
	// Wake-ups of the connection's reader and writer goroutines (waits
	// for room toward the guest, for guest bytes to write) so far.
	ReaderWakes, WriterWakes uint32
	// DirectReads counts reads of the stream the device's worker made
	// while the reader waited for room.
	DirectReads uint32
}

// stateNames names connState values.
var stateNames = map[connState]string{
	stateHostConnecting: "host_connecting", stateGuestConnecting: "guest_connecting",
	stateEstablished: "established", stateClosing: "closing",
}

// Stats returns a snapshot of every connection, ordered by guest port then
// host port.
func (d *Device) Stats() []ConnStats {
	conns, _, _ := d.m.snapshot()
	return conns
}

// snapshot returns every connection's stats, ordered, and the lengths of
// the ready list and the queue of resets.
func (m *mux) snapshot() (conns []ConnStats, ready, resets int) {
	m.mu.Lock()
	out := make([]ConnStats, 0, len(m.conns))
	for k, c := range m.conns {
		out = append(out, ConnStats{
			HostCID: k.hostCID, HostPort: k.hostPort, GuestPort: k.guestPort, State: stateNames[c.state],
			InQueued: c.in.Len(), RxCnt: c.rxCnt, FwdCnt: c.fwdCnt, LastFwdSent: c.lastFwdSent,
			OutQueued: c.out.Len(), TxCnt: c.txCnt, PeerBufAlloc: c.peerBufAlloc, PeerFwdCnt: c.peerFwdCnt,
			Credit: c.room(), Pending: c.pending(), Queued: c.queued, ReaderEOF: c.readerEOF, WriterDone: c.writerDone,
			ReaderWakes: c.readerWakes, WriterWakes: c.writerWakes, DirectReads: c.directReads,
		})
	}
	ready, resets = len(m.ready), len(m.resets)
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].GuestPort != out[j].GuestPort {
			return out[i].GuestPort < out[j].GuestPort
		}
		return out[i].HostPort < out[j].HostPort
	})
	return out, ready, resets
}

// DebugState describes the device's connections, one line each, then the
// last control packets (requests, responses, resets, shutdowns) with their
// age, for a VMM state dump.
func (d *Device) DebugState() []string {
	conns, ready, resets := d.m.snapshot()
	lines := []string{fmt.Sprintf("vsock cid %d: %d connections, %d ready to send, %d resets queued", d.guestCID, len(conns), ready, resets)}
	for _, c := range conns {
		lines = append(lines, formatConnStats(c))
	}
	d.m.mu.Lock()
	h := d.m.history // a fixed array: copied, then formatted without the lock.
	d.m.mu.Unlock()
	return append(lines, h.lines(time.Now())...)
}

// formatConnStats formats one connection's snapshot.
func formatConnStats(c ConnStats) string {
	return fmt.Sprintf("vsock conn %d:%d <-> guest:%d %s in_queued=%d rx_cnt=%d fwd_cnt=%d last_fwd_sent=%d out_queued=%d tx_cnt=%d peer_buf_alloc=%d peer_fwd_cnt=%d in_flight=%d credit=%d pending=%v queued=%v reader_eof=%v writer_done=%v reader_wakes=%d writer_wakes=%d direct_reads=%d",
		c.HostCID, c.HostPort, c.GuestPort, c.State, c.InQueued, c.RxCnt, c.FwdCnt, c.LastFwdSent,
		c.OutQueued, c.TxCnt, c.PeerBufAlloc, c.PeerFwdCnt, c.TxCnt-c.PeerFwdCnt, c.Credit, c.Pending, c.Queued, c.ReaderEOF, c.WriterDone, c.ReaderWakes, c.WriterWakes, c.DirectReads)
}

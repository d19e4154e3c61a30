package virtio

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// QueueIndices is a snapshot of a split virtqueue's ring indices, for
// diagnosing a stalled queue: the driver published AvailIdx, the device
// has consumed up to NextAvail and published UsedIdx (its NextUsed).
type QueueIndices struct {
	Size       uint16
	AvailIdx   uint16 // avail->idx, as the driver wrote it.
	AvailFlags uint16 // avail->flags (1: VRING_AVAIL_F_NO_INTERRUPT).
	NextAvail  uint16 // next available entry the device will pop.
	UsedIdx    uint16 // used->idx in guest memory.
	NextUsed   uint16 // next used entry the device will fill.
}

// Indices returns q's ring indices.
func (q *Queue) Indices() QueueIndices {
	q.mu.Lock()
	defer q.mu.Unlock()
	le := binary.LittleEndian
	used, ok := load16(q.used, 2)
	if !ok {
		used = le.Uint16(q.used[2:])
	}
	flags, ok := load16(q.avail, 0)
	if !ok {
		flags = le.Uint16(q.avail[0:])
	}
	return QueueIndices{Size: q.size, AvailIdx: q.availIdx(), AvailFlags: flags, NextAvail: q.nextAvail, UsedIdx: used, NextUsed: q.nextUsed}
}

// queueCounters counts one queue's notifications and interrupts. All
// fields are atomics: kicks come from vCPU and ioeventfd goroutines,
// interrupts from device workers.
type queueCounters struct {
	kicks, interrupts, suppressed atomic.Uint64
	lastKick, lastInterrupt       atomic.Int64 // unix nanoseconds, 0: never.
}

// transportStats holds the counters of every queue of a transport.
type transportStats struct {
	queues  []queueCounters
	lastAck atomic.Int64 // unix nanoseconds of the driver's last InterruptACK write, 0: never.
}

// ack records the driver's acknowledgement of an interrupt: the guest ran
// its interrupt handler then.
func (s *transportStats) ack() { s.lastAck.Store(time.Now().UnixNano()) }

// kick records a driver notification of queue q.
func (s *transportStats) kick(q int) {
	if q >= 0 && q < len(s.queues) {
		s.queues[q].kicks.Add(1)
		s.queues[q].lastKick.Store(time.Now().UnixNano())
	}
}

// interrupt records a used-buffer interrupt for queue q (suppressed: the
// driver had asked for none, so none was raised).
func (s *transportStats) interrupt(q int, suppressed bool) {
	if q < 0 || q >= len(s.queues) {
		return
	}
	if suppressed {
		s.queues[q].suppressed.Add(1)
		return
	}
	s.queues[q].interrupts.Add(1)
	s.queues[q].lastInterrupt.Store(time.Now().UnixNano())
}

// QueueStats is a snapshot of one queue of a transport.
type QueueStats struct {
	Index      int
	Ready      bool
	Indices    QueueIndices // zero unless Ready.
	Kicks      uint64       // driver notifications.
	Interrupts uint64       // used-buffer interrupts raised.
	Suppressed uint64       // used-buffer signals the driver had suppressed.
	// LastKick and LastInterrupt are zero if there was none.
	LastKick, LastInterrupt time.Time
}

// Stats returns a snapshot of every queue of the transport.
func (m *MMIO) Stats() []QueueStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]QueueStats, len(m.queues))
	for i, qc := range m.queues {
		s := QueueStats{Index: i, Ready: qc.ready}
		if qc.q != nil {
			s.Indices = qc.q.Indices()
		}
		if i < len(m.stats.queues) {
			c := &m.stats.queues[i]
			s.Kicks, s.Interrupts, s.Suppressed = c.kicks.Load(), c.interrupts.Load(), c.suppressed.Load()
			if t := c.lastKick.Load(); t != 0 {
				s.LastKick = time.Unix(0, t)
			}
			if t := c.lastInterrupt.Load(); t != 0 {
				s.LastInterrupt = time.Unix(0, t)
			}
		}
		out[i] = s
	}
	return out
}

// DebugState describes the transport and each queue, one line each, for
// a VMM state dump; times are ages relative to now.
func (m *MMIO) DebugState() []string {
	now := time.Now()
	var lastAck time.Time
	if t := m.stats.lastAck.Load(); t != 0 {
		lastAck = time.Unix(0, t)
	}
	lines := []string{fmt.Sprintf("virtio device %d: status=%#x interrupt_status=%#x last_ack_ago=%s", m.dev.DeviceID(), m.Status(), m.intStatus.Load(), age(lastAck, now))}
	for _, s := range m.Stats() {
		lines = append(lines, formatQueueStats(m.dev.DeviceID(), s, now))
	}
	return lines
}

// age formats how long before now t was, "never" for the zero time.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%.3fs", now.Sub(t).Seconds())
}

// formatQueueStats formats one queue's snapshot with ages relative to now.
func formatQueueStats(dev uint32, s QueueStats, now time.Time) string {
	ix := s.Indices
	return fmt.Sprintf("virtio device %d queue %d: ready=%v size=%d avail_idx=%d avail_flags=%#x next_avail=%d used_idx=%d next_used=%d pending=%d kicks=%d last_kick_ago=%s interrupts=%d suppressed=%d last_interrupt_ago=%s",
		dev, s.Index, s.Ready, ix.Size, ix.AvailIdx, ix.AvailFlags, ix.NextAvail, ix.UsedIdx, ix.NextUsed, ix.AvailIdx-ix.NextAvail,
		s.Kicks, age(s.LastKick, now), s.Interrupts, s.Suppressed, age(s.LastInterrupt, now))
}

package virtio

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/nitrovm/nitrovm/internal/devices"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// MMIOSize is the size of one virtio-mmio device window.
const MMIOSize = 0x1000

// MMIO register offsets, version 2 layout (VirtIO 1.1 §4.2.2, table 4.1;
// names from include/uapi/linux/virtio_mmio.h).
const (
	_VIRTIO_MMIO_MAGIC_VALUE         = 0x000
	_VIRTIO_MMIO_VERSION             = 0x004
	_VIRTIO_MMIO_DEVICE_ID           = 0x008
	_VIRTIO_MMIO_VENDOR_ID           = 0x00c
	_VIRTIO_MMIO_DEVICE_FEATURES     = 0x010
	_VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014
	_VIRTIO_MMIO_DRIVER_FEATURES     = 0x020
	_VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024
	_VIRTIO_MMIO_QUEUE_SEL           = 0x030
	_VIRTIO_MMIO_QUEUE_NUM_MAX       = 0x034
	_VIRTIO_MMIO_QUEUE_NUM           = 0x038
	_VIRTIO_MMIO_QUEUE_READY         = 0x044
	_VIRTIO_MMIO_QUEUE_NOTIFY        = 0x050
	_VIRTIO_MMIO_INTERRUPT_STATUS    = 0x060
	_VIRTIO_MMIO_INTERRUPT_ACK       = 0x064
	_VIRTIO_MMIO_STATUS              = 0x070
	_VIRTIO_MMIO_QUEUE_DESC_LOW      = 0x080
	_VIRTIO_MMIO_QUEUE_DESC_HIGH     = 0x084
	_VIRTIO_MMIO_QUEUE_AVAIL_LOW     = 0x090
	_VIRTIO_MMIO_QUEUE_AVAIL_HIGH    = 0x094
	_VIRTIO_MMIO_QUEUE_USED_LOW      = 0x0a0
	_VIRTIO_MMIO_QUEUE_USED_HIGH     = 0x0a4
	_VIRTIO_MMIO_CONFIG_GENERATION   = 0x0fc
	_VIRTIO_MMIO_CONFIG              = 0x100

	// _VIRTIO_MMIO_INT_VRING is the used-buffer bit of InterruptStatus.
	_VIRTIO_MMIO_INT_VRING = 1 << 0
	// _VIRTIO_MMIO_INT_CONFIG is the configuration-change bit.
	_VIRTIO_MMIO_INT_CONFIG = 1 << 1
)

// Transport constants.
const (
	// MMIOMagic is "virt" in little-endian (VirtIO 1.1 §4.2.2).
	MMIOMagic = 0x74726976
	// MMIOVersion is the non-legacy register layout version.
	MMIOVersion = 2
	// MMIOVendorID is nitrovm's virtio vendor ID ("NV").
	MMIOVendorID = 0x4e56
	// MMIOQueueNotifyOffset is the QueueNotify register's offset, for a VMM
	// that registers an ioeventfd (datamatch = queue index) there and
	// forwards each event as a 4-byte Write of the index to this offset.
	MMIOQueueNotifyOffset = _VIRTIO_MMIO_QUEUE_NOTIFY
)

// Device status bits (VirtIO 1.1 §2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Feature bits the transport handles itself (VirtIO 1.1 §6).
const (
	// FeatureVersion1 is VIRTIO_F_VERSION_1: required of every driver.
	FeatureVersion1 = uint64(1) << 32
	// FeatureRingIndirectDesc is VIRTIO_F_RING_INDIRECT_DESC (§2.6.5.3).
	FeatureRingIndirectDesc = uint64(1) << 28
	// FeatureRingEventIdx is VIRTIO_RING_F_EVENT_IDX (§2.6.7.2, §2.6.8.2):
	// used_event and avail_event suppress interrupts and kicks.
	FeatureRingEventIdx = uint64(1) << 29
)

// queueConfig is the driver's view of one queue, set through the registers.
type queueConfig struct {
	max               uint16
	num               uint16
	ready             bool
	desc, avail, used uint64
	q                 *Queue
}

// MMIO is the virtio-mmio transport for one device. It implements
// devices.BusDevice; the VMM maps it at some base address and
// calls Read and Write from vCPU threads concurrently.
type MMIO struct {
	dev    Device
	mem    *memory.Guest
	irq    devices.Interrupt
	logger *slog.Logger

	intStatus atomic.Uint32 // InterruptStatus bits.
	configGen atomic.Uint32 // ConfigGeneration.

	mu          sync.Mutex // guards everything below and calls into dev.
	status      uint32
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint32
	queues      []queueConfig
	active      *signaler // non-nil between activation and reset.

	stats transportStats // per-queue kick and interrupt counters; atomics.
}

// NewMMIO returns the virtio-mmio v2 transport (VirtIO 1.1 §4.2.2) for dev.
// It implements devices.BusDevice; the VMM maps it at some base and calls
// Read/Write from vCPU threads concurrently.
func NewMMIO(dev Device, mem *memory.Guest, irq devices.Interrupt, logger *slog.Logger) *MMIO {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &MMIO{dev: dev, mem: mem, irq: irq, logger: logger.With("virtio_device", dev.DeviceID())}
	for _, max := range dev.QueueMaxSizes() {
		m.queues = append(m.queues, queueConfig{max: max})
	}
	m.stats.queues = make([]queueCounters, len(m.queues))
	return m
}

// deviceFeatures is what the transport offers: the device's bits plus
// VERSION_1, indirect descriptors and event indices, which Queue
// implements.
func (m *MMIO) deviceFeatures() uint64 {
	return m.dev.Features() | FeatureVersion1 | FeatureRingIndirectDesc | FeatureRingEventIdx
}

// DriverFeatures returns the features the driver accepted (valid once
// FEATURES_OK is set).
func (m *MMIO) DriverFeatures() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drvFeatures
}

// Status returns the device status register.
func (m *MMIO) Status() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Read implements devices.BusDevice.Read. Registers must be read 32 bits
// wide; other widths read as zero. The config space allows any width.
func (m *MMIO) Read(offset uint64, data []byte) {
	clear(data)
	if offset >= _VIRTIO_MMIO_CONFIG {
		m.mu.Lock()
		m.dev.ReadConfig(offset-_VIRTIO_MMIO_CONFIG, data)
		m.mu.Unlock()
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		m.logger.Debug("virtio-mmio: bad register read", "offset", offset, "len", len(data))
		return
	}
	m.mu.Lock()
	v := m.readReg(offset)
	m.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

// readReg returns a register's value. m.mu is held.
func (m *MMIO) readReg(offset uint64) uint32 {
	switch offset {
	case _VIRTIO_MMIO_MAGIC_VALUE:
		return MMIOMagic
	case _VIRTIO_MMIO_VERSION:
		return MMIOVersion
	case _VIRTIO_MMIO_DEVICE_ID:
		return m.dev.DeviceID()
	case _VIRTIO_MMIO_VENDOR_ID:
		return MMIOVendorID
	case _VIRTIO_MMIO_DEVICE_FEATURES:
		if m.devFeatSel > 1 {
			return 0
		}
		return uint32(m.deviceFeatures() >> (32 * m.devFeatSel))
	case _VIRTIO_MMIO_QUEUE_NUM_MAX:
		if qc := m.selected(); qc != nil {
			return uint32(qc.max)
		}
		return 0
	case _VIRTIO_MMIO_QUEUE_READY:
		if qc := m.selected(); qc != nil && qc.ready {
			return 1
		}
		return 0
	case _VIRTIO_MMIO_INTERRUPT_STATUS:
		return m.intStatus.Load()
	case _VIRTIO_MMIO_STATUS:
		return m.status
	case _VIRTIO_MMIO_CONFIG_GENERATION:
		return m.configGen.Load()
	}
	m.logger.Debug("virtio-mmio: read of write-only or unknown register", "offset", offset)
	return 0
}

// selected returns the queue chosen by QueueSel, or nil. m.mu is held.
func (m *MMIO) selected() *queueConfig {
	if m.queueSel >= uint32(len(m.queues)) {
		return nil
	}
	return &m.queues[m.queueSel]
}

// Write implements devices.BusDevice.Write. Registers must be written 32
// bits wide; other widths are ignored. The config space allows any width.
func (m *MMIO) Write(offset uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if offset >= _VIRTIO_MMIO_CONFIG {
		m.dev.WriteConfig(offset-_VIRTIO_MMIO_CONFIG, data)
		return
	}
	if len(data) != 4 || offset%4 != 0 {
		m.logger.Debug("virtio-mmio: bad register write", "offset", offset, "len", len(data))
		return
	}
	v := binary.LittleEndian.Uint32(data)
	switch offset {
	case _VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		m.devFeatSel = v
	case _VIRTIO_MMIO_DRIVER_FEATURES:
		if m.status&StatusDriver == 0 || m.status&StatusFeaturesOK != 0 {
			m.logger.Debug("virtio-mmio: driver features written in wrong state", "status", m.status)
			return
		}
		switch m.drvFeatSel {
		case 0:
			m.drvFeatures = m.drvFeatures&^0xffffffff | uint64(v)
		case 1:
			m.drvFeatures = m.drvFeatures&0xffffffff | uint64(v)<<32
		}
	case _VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		m.drvFeatSel = v
	case _VIRTIO_MMIO_QUEUE_SEL:
		m.queueSel = v
	case _VIRTIO_MMIO_QUEUE_NUM, _VIRTIO_MMIO_QUEUE_DESC_LOW, _VIRTIO_MMIO_QUEUE_DESC_HIGH,
		_VIRTIO_MMIO_QUEUE_AVAIL_LOW, _VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
		_VIRTIO_MMIO_QUEUE_USED_LOW, _VIRTIO_MMIO_QUEUE_USED_HIGH:
		m.writeQueueReg(offset, v)
	case _VIRTIO_MMIO_QUEUE_READY:
		m.setQueueReady(v == 1)
	case _VIRTIO_MMIO_QUEUE_NOTIFY:
		if m.active == nil || v >= uint32(len(m.queues)) {
			m.logger.Debug("virtio-mmio: notify ignored", "queue", v, "active", m.active != nil)
			return
		}
		m.stats.kick(int(v))
		m.dev.Notify(int(v))
	case _VIRTIO_MMIO_INTERRUPT_ACK:
		m.intStatus.And(^v)
		m.stats.ack()
	case _VIRTIO_MMIO_STATUS:
		m.setStatus(v)
	default:
		m.logger.Debug("virtio-mmio: write to read-only or unknown register", "offset", offset)
	}
}

// writeQueueReg stores a queue configuration register. The driver must not
// change a ready queue (VirtIO 1.1 §4.2.3.2); such writes are ignored.
// m.mu is held.
func (m *MMIO) writeQueueReg(offset uint64, v uint32) {
	qc := m.selected()
	if qc == nil || qc.ready || m.active != nil {
		m.logger.Debug("virtio-mmio: queue register write ignored", "queue", m.queueSel, "offset", offset)
		return
	}
	lo := func(p *uint64) { *p = *p&^0xffffffff | uint64(v) }
	hi := func(p *uint64) { *p = *p&0xffffffff | uint64(v)<<32 }
	switch offset {
	case _VIRTIO_MMIO_QUEUE_NUM:
		qc.num = uint16(v)
		if v > uint32(qc.max) {
			qc.num = 0 // invalid; QueueReady will be refused.
		}
	case _VIRTIO_MMIO_QUEUE_DESC_LOW:
		lo(&qc.desc)
	case _VIRTIO_MMIO_QUEUE_DESC_HIGH:
		hi(&qc.desc)
	case _VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		lo(&qc.avail)
	case _VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		hi(&qc.avail)
	case _VIRTIO_MMIO_QUEUE_USED_LOW:
		lo(&qc.used)
	case _VIRTIO_MMIO_QUEUE_USED_HIGH:
		hi(&qc.used)
	}
}

// setQueueReady validates the selected queue's layout when the driver marks
// it ready. An invalid layout leaves QueueReady at 0. m.mu is held.
func (m *MMIO) setQueueReady(ready bool) {
	qc := m.selected()
	if qc == nil || m.active != nil {
		return
	}
	if !ready {
		qc.ready, qc.q = false, nil
		return
	}
	q, err := NewQueue(m.mem, qc.num, qc.desc, qc.avail, qc.used)
	if err != nil {
		m.logger.Warn("virtio-mmio: queue setup rejected", "queue", m.queueSel, "err", err)
		return
	}
	qc.ready, qc.q = true, q
}

// setStatus runs the device status state machine (VirtIO 1.1 §3.1.1,
// §4.2.3.1). m.mu is held.
func (m *MMIO) setStatus(v uint32) {
	if v == 0 {
		m.reset()
		return
	}
	old := m.status
	if v&old != old {
		m.logger.Debug("virtio-mmio: status bits cleared without reset ignored", "old", old, "new", v)
		return
	}
	added := v &^ old
	if added&StatusFailed != 0 {
		m.status |= StatusFailed
		m.logger.Debug("virtio-mmio: driver gave up on device")
		return
	}
	if added&StatusAcknowledge != 0 {
		m.status |= StatusAcknowledge
	}
	if added&StatusDriver != 0 {
		if m.status&StatusAcknowledge == 0 {
			return
		}
		m.status |= StatusDriver
	}
	if added&StatusFeaturesOK != 0 {
		if m.status&StatusDriver == 0 {
			return
		}
		if err := m.checkFeatures(); err != nil {
			m.logger.Warn("virtio-mmio: features rejected", "err", err)
			return // FEATURES_OK stays clear: the driver sees the refusal.
		}
		m.status |= StatusFeaturesOK
	}
	if added&StatusDriverOK != 0 {
		if m.status&StatusFeaturesOK == 0 {
			return
		}
		if err := m.activate(); err != nil {
			m.logger.Warn("virtio-mmio: activation failed", "err", err)
			m.status |= StatusDeviceNeedsReset
			return
		}
		m.status |= StatusDriverOK
	}
	if added&StatusDeviceNeedsReset != 0 {
		m.logger.Debug("virtio-mmio: driver tried to set DEVICE_NEEDS_RESET")
	}
}

// checkFeatures validates the driver's feature choice. m.mu is held.
func (m *MMIO) checkFeatures() error {
	if extra := m.drvFeatures &^ m.deviceFeatures(); extra != 0 {
		return fmt.Errorf("virtio: driver accepted features %#x the device did not offer", extra)
	}
	if m.drvFeatures&FeatureVersion1 == 0 {
		return fmt.Errorf("virtio: driver did not accept VIRTIO_F_VERSION_1 (legacy drivers unsupported)")
	}
	return nil
}

// activate hands the ready queues to the device. All queues must be ready.
// m.mu is held.
func (m *MMIO) activate() error {
	qs := make([]*Queue, len(m.queues))
	for i, qc := range m.queues {
		if !qc.ready {
			return fmt.Errorf("virtio: queue %d not ready at DRIVER_OK", i)
		}
		qs[i] = qc.q
	}
	for _, q := range qs {
		q.SetEventIdx(m.drvFeatures&FeatureRingEventIdx != 0)
	}
	s := &signaler{m: m, queues: qs}
	s.live.Store(true)
	if err := m.dev.Activate(m.mem, qs, s); err != nil {
		return fmt.Errorf("virtio: activate device %d: %w", m.dev.DeviceID(), err)
	}
	m.active = s
	return nil
}

// reset returns the transport and the device to their initial state
// (VirtIO 1.1 §4.2.3.1: writing 0 to Status). m.mu is held.
func (m *MMIO) reset() {
	if m.active != nil {
		m.active.live.Store(false)
		m.active = nil
	}
	m.dev.Reset()
	m.status, m.devFeatSel, m.drvFeatSel, m.drvFeatures, m.queueSel = 0, 0, 0, 0, 0
	for i := range m.queues {
		m.queues[i] = queueConfig{max: m.queues[i].max}
	}
	m.intStatus.Store(0)
}

// Reset resets the device as if the driver had written 0 to Status, e.g.
// when the VM shuts down.
func (m *MMIO) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset()
}

// signaler is the Signaler for one activation. It never takes MMIO.mu, so a
// device may call it from any goroutine, even while the transport holds its
// lock to Notify or Reset the device.
type signaler struct {
	m      *MMIO
	queues []*Queue
	live   atomic.Bool // false after the transport was reset.
}

// SignalUsed implements Signaler.SignalUsed, honouring used_event or
// VRING_AVAIL_F_NO_INTERRUPT (VirtIO 1.1 §2.6.7.2, Queue.NeedInterrupt).
func (s *signaler) SignalUsed(queue int) error {
	if !s.live.Load() {
		return nil
	}
	if queue < 0 || queue >= len(s.queues) {
		return fmt.Errorf("virtio: signal for queue %d of %d", queue, len(s.queues))
	}
	if !s.queues[queue].NeedInterrupt() {
		s.m.stats.interrupt(queue, true)
		return nil
	}
	s.m.stats.interrupt(queue, false)
	s.m.intStatus.Or(_VIRTIO_MMIO_INT_VRING)
	if err := s.m.irq.Trigger(); err != nil {
		return fmt.Errorf("virtio: raise used-buffer interrupt: %w", err)
	}
	return nil
}

// SignalConfig implements Signaler.SignalConfig (VirtIO 1.1 §4.2.2:
// ConfigGeneration changes with the configuration).
func (s *signaler) SignalConfig() error {
	if !s.live.Load() {
		return nil
	}
	s.m.configGen.Add(1)
	s.m.intStatus.Or(_VIRTIO_MMIO_INT_CONFIG)
	if err := s.m.irq.Trigger(); err != nil {
		return fmt.Errorf("virtio: raise config interrupt: %w", err)
	}
	return nil
}

package kvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KVM binary statistics (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD";
// structs from include/uapi/linux/kvm.h). The file a stats fd reads as is:
//
//	struct kvm_stats_header {
//		__u32 flags;
//		__u32 name_size;
//		__u32 num_desc;
//		__u32 id_offset;
//		__u32 desc_offset;
//		__u32 data_offset;
//	};
//	struct kvm_stats_desc {
//		__u32 flags;
//		__s16 exponent;
//		__u16 size;
//		__u32 offset;
//		__u32 bucket_size;
//		char name[];	/* name_size bytes, NUL terminated */
//	};
//
// followed by the data block: desc.size little-endian (host order) u64
// values per descriptor, at data_offset + desc.offset.
const (
	// statsHeaderSize is sizeof(struct kvm_stats_header).
	statsHeaderSize = 24
	// statsDescSize is sizeof(struct kvm_stats_desc) without its name.
	statsDescSize = 16

	// Stat types, bits 0-3 of kvm_stats_desc.flags (KVM_STATS_TYPE_*).
	_KVM_STATS_TYPE_MASK        = 0xf
	_KVM_STATS_TYPE_CUMULATIVE  = 0
	_KVM_STATS_TYPE_INSTANT     = 1
	_KVM_STATS_TYPE_PEAK        = 2
	_KVM_STATS_TYPE_LINEAR_HIST = 3
	_KVM_STATS_TYPE_LOG_HIST    = 4
)

// Limits on what a stats file may describe; the kernel's own tables are far
// smaller (about 60 vCPU and 20 VM stats on x86, names of 48 bytes, i.e.
// KVM_STATS_NAME_SIZE), so anything larger is refused as malformed.
const (
	// maxStatsNameBytes caps name_size.
	maxStatsNameBytes = 1024
	// maxStatsDescs caps num_desc.
	maxStatsDescs = 4096
	// maxStatsDataBytes caps the data block read per snapshot.
	maxStatsDataBytes = 1 << 20
)

// StatKind is the type of a statistic (KVM_STATS_TYPE_*).
type StatKind uint8

// Statistic kinds.
const (
	StatCumulative StatKind = _KVM_STATS_TYPE_CUMULATIVE // a counter that only grows.
	StatInstant    StatKind = _KVM_STATS_TYPE_INSTANT    // a current value.
	StatPeak       StatKind = _KVM_STATS_TYPE_PEAK       // the highest value seen.
	StatLinearHist StatKind = _KVM_STATS_TYPE_LINEAR_HIST
	StatLogHist    StatKind = _KVM_STATS_TYPE_LOG_HIST
)

// StatDesc describes one statistic of a stats file.
type StatDesc struct {
	Name     string
	Kind     StatKind
	Flags    uint32 // the raw kvm_stats_desc.flags (type, unit, base).
	Exponent int16
	Size     uint16 // number of u64 values (1 for a plain counter).
	Offset   uint32 // byte offset of the values in the data block.
}

// StatsSchema is the parsed header and descriptors of a stats file.
type StatsSchema struct {
	ID         string // the stats file's id string, e.g. "kvm-1234" or "kvm-1234/vcpu-0".
	Descs      []StatDesc
	dataOffset uint32
	dataBytes  uint32 // bytes of the data block that the descriptors cover.
}

// ReadStatsSchema parses the header and descriptors of a KVM stats file.
// Every count and offset comes from the kernel but is checked anyway: a
// malformed file returns an error, never a panic or a huge allocation.
func ReadStatsSchema(r io.ReaderAt) (*StatsSchema, error) {
	var hb [statsHeaderSize]byte
	if _, err := r.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("kvm: stats header: %w", err)
	}
	le := binary.LittleEndian
	nameSize := le.Uint32(hb[4:])
	numDesc := le.Uint32(hb[8:])
	idOffset := le.Uint32(hb[12:])
	descOffset := le.Uint32(hb[16:])
	dataOffset := le.Uint32(hb[20:])
	switch {
	case nameSize == 0 || nameSize > maxStatsNameBytes:
		return nil, fmt.Errorf("kvm: stats name size %d out of range [1, %d]", nameSize, maxStatsNameBytes)
	case numDesc > maxStatsDescs:
		return nil, fmt.Errorf("kvm: %d stats descriptors, at most %d", numDesc, maxStatsDescs)
	}
	s := &StatsSchema{dataOffset: dataOffset}
	id := make([]byte, nameSize)
	if _, err := r.ReadAt(id, int64(idOffset)); err != nil {
		return nil, fmt.Errorf("kvm: stats id at %d: %w", idOffset, err)
	}
	s.ID = cstring(id)
	descLen := statsDescSize + uint64(nameSize)
	db := make([]byte, descLen*uint64(numDesc)) // at most 4096 * 1040 bytes.
	if len(db) > 0 {
		if _, err := r.ReadAt(db, int64(descOffset)); err != nil {
			return nil, fmt.Errorf("kvm: stats descriptors at %d: %w", descOffset, err)
		}
	}
	for i := range uint64(numDesc) {
		d := db[i*descLen : (i+1)*descLen]
		desc := StatDesc{
			Flags:    le.Uint32(d[0:]),
			Exponent: int16(le.Uint16(d[4:])),
			Size:     le.Uint16(d[6:]),
			Offset:   le.Uint32(d[8:]),
			Name:     cstring(d[statsDescSize:]),
		}
		desc.Kind = StatKind(desc.Flags & _KVM_STATS_TYPE_MASK)
		if desc.Name == "" {
			return nil, fmt.Errorf("kvm: stats descriptor %d has no name", i)
		}
		end := uint64(desc.Offset) + 8*uint64(desc.Size)
		if end > maxStatsDataBytes {
			return nil, fmt.Errorf("kvm: stat %q: values [%d, %d) beyond %d bytes", desc.Name, desc.Offset, end, maxStatsDataBytes)
		}
		s.dataBytes = max(s.dataBytes, uint32(end))
		s.Descs = append(s.Descs, desc)
	}
	return s, nil
}

// cstring returns b up to its first NUL, printable ASCII only.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, string(b))
}

// Read returns the current value of every single-valued statistic
// (histograms are left out), by name. Values are read in one go, so they
// are a consistent-enough snapshot for counting.
func (s *StatsSchema) Read(r io.ReaderAt) (map[string]uint64, error) {
	data := make([]byte, s.dataBytes)
	if len(data) > 0 {
		if _, err := r.ReadAt(data, int64(s.dataOffset)); err != nil {
			return nil, fmt.Errorf("kvm: stats data at %d: %w", s.dataOffset, err)
		}
	}
	out := make(map[string]uint64, len(s.Descs))
	for _, d := range s.Descs {
		if d.Size != 1 || d.Kind > StatPeak {
			continue
		}
		out[d.Name] = binary.LittleEndian.Uint64(data[d.Offset:])
	}
	return out, nil
}

// ErrNoStats reports a kernel without the binary stats interface
// (KVM_CAP_BINARY_STATS_FD, Linux 5.14).
var ErrNoStats = errors.New("kvm: binary stats (KVM_GET_STATS_FD) not supported")

// Stats is an open KVM stats file of a VM or vCPU.
type Stats struct {
	f      *os.File
	schema *StatsSchema
}

// openStats issues KVM_GET_STATS_FD on fd and reads the schema.
func openStats(fd int, what string) (*Stats, error) {
	sfd, err := ioctlVal(fd, _KVM_GET_STATS_FD, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoStats, what, err)
	}
	f := os.NewFile(sfd, "kvm-stats-"+what)
	s, err := ReadStatsSchema(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Stats{f: f, schema: s}, nil
}

// Stats opens the VM's statistics (KVM_GET_STATS_FD on the VM fd).
func (vm *VM) Stats() (*Stats, error) { return openStats(vm.fd, "vm") }

// Stats opens the vCPU's statistics (KVM_GET_STATS_FD on the vCPU fd); it
// may be called from any goroutine.
func (c *VCPU) Stats() (*Stats, error) { return openStats(c.fd, fmt.Sprintf("vcpu-%d", c.ID)) }

// Schema returns the statistics' descriptors.
func (s *Stats) Schema() *StatsSchema { return s.schema }

// Read returns the current single-valued statistics by name.
func (s *Stats) Read() (map[string]uint64, error) { return s.schema.Read(s.f) }

// Close closes the stats file.
func (s *Stats) Close() error { return s.f.Close() }

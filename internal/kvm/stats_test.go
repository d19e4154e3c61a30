package kvm

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// fakeStat is one statistic of a fake stats file.
type fakeStat struct {
	name   string
	flags  uint32
	values []uint64
}

// statsFile builds a stats file as the kernel lays it out: header, id,
// descriptors, data; mutate may corrupt the header fields before encoding.
func statsFile(nameSize uint32, id string, stats []fakeStat, mutate func(h []uint32)) []byte {
	le := binary.LittleEndian
	descLen := statsDescSize + nameSize
	idOff := uint32(statsHeaderSize)
	descOff := idOff + nameSize
	dataOff := descOff + descLen*uint32(len(stats))
	h := []uint32{0, nameSize, uint32(len(stats)), idOff, descOff, dataOff}
	if mutate != nil {
		mutate(h)
	}
	var b []byte
	for _, v := range h {
		b = le.AppendUint32(b, v)
	}
	idb := make([]byte, nameSize)
	copy(idb, id)
	b = append(b, idb...)
	var data []byte
	for _, s := range stats {
		b = le.AppendUint32(b, s.flags)
		b = le.AppendUint16(b, 0)
		b = le.AppendUint16(b, uint16(len(s.values)))
		b = le.AppendUint32(b, uint32(len(data)))
		b = le.AppendUint32(b, 0)
		nb := make([]byte, nameSize)
		copy(nb, s.name)
		b = append(b, nb...)
		for _, v := range s.values {
			data = le.AppendUint64(data, v)
		}
	}
	return append(b, data...)
}

func TestReadStats(t *testing.T) {
	f := statsFile(48, "kvm-42/vcpu-0", []fakeStat{
		{"exits", _KVM_STATS_TYPE_CUMULATIVE, []uint64{1234}},
		{"io_exits", _KVM_STATS_TYPE_CUMULATIVE, []uint64{56}},
		{"halt_poll_hist", _KVM_STATS_TYPE_LOG_HIST, []uint64{1, 2, 3}},
		{"max_mmu_page_hash_collisions", _KVM_STATS_TYPE_PEAK, []uint64{7}},
		{"guest_mode", _KVM_STATS_TYPE_INSTANT, []uint64{1}},
	}, nil)
	s, err := ReadStatsSchema(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "kvm-42/vcpu-0" {
		t.Errorf("got id %q, want kvm-42/vcpu-0", s.ID)
	}
	if len(s.Descs) != 5 || s.Descs[2].Kind != StatLogHist || s.Descs[2].Size != 3 {
		t.Errorf("got descriptors %+v", s.Descs)
	}
	got, err := s.Read(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"exits": 1234, "io_exits": 56, "max_mmu_page_hash_collisions": 7, "guest_mode": 1}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("got %s=%d, want %d", k, got[k], v)
		}
	}
}

func TestReadStatsErrors(t *testing.T) {
	one := []fakeStat{{"exits", 0, []uint64{1}}}
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"short header", make([]byte, 10), "kvm: stats header: EOF"},
		{"zero name size", statsFile(48, "x", one, func(h []uint32) { h[1] = 0 }), "kvm: stats name size 0 out of range [1, 1024]"},
		{"huge name size", statsFile(48, "x", one, func(h []uint32) { h[1] = 1 << 20 }), "kvm: stats name size 1048576 out of range [1, 1024]"},
		{"too many descriptors", statsFile(48, "x", one, func(h []uint32) { h[2] = 5000 }), "kvm: 5000 stats descriptors, at most 4096"},
		{"id outside file", statsFile(48, "x", one, func(h []uint32) { h[3] = 1 << 30 }), "kvm: stats id at 1073741824: EOF"},
		{"descriptors outside file", statsFile(48, "x", one, func(h []uint32) { h[2] = 3 }), "kvm: stats descriptors at 72: EOF"},
		{"nameless descriptor", statsFile(48, "x", []fakeStat{{"", 0, []uint64{1}}}, nil), "kvm: stats descriptor 0 has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadStatsSchema(bytes.NewReader(tc.file))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadStatsDataErrors(t *testing.T) {
	// A descriptor whose values lie beyond the cap, and a data block cut short.
	f := statsFile(48, "x", []fakeStat{{"exits", 0, []uint64{1}}}, nil)
	bad := bytes.Clone(f)
	binary.LittleEndian.PutUint32(bad[statsHeaderSize+48+8:], maxStatsDataBytes)
	if _, err := ReadStatsSchema(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), `stat "exits": values [1048576, 1048584) beyond 1048576 bytes`) {
		t.Errorf("got %v, want the out-of-range values error", err)
	}
	s, err := ReadStatsSchema(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(bytes.NewReader(f[:len(f)-4])); err == nil || !strings.Contains(err.Error(), "kvm: stats data at 136: ") {
		t.Errorf("got %v, want a short data error", err)
	}
}

// FuzzReadStats feeds arbitrary stats files to the parser: it must return
// an error or a schema whose Read stays in bounds.
func FuzzReadStats(f *testing.F) {
	f.Add(statsFile(48, "kvm-1", []fakeStat{{"exits", 0, []uint64{5}}, {"hist", 4, []uint64{1, 2}}}, nil))
	f.Add(statsFile(8, "v", []fakeStat{{"a", 2, []uint64{1}}}, func(h []uint32) { h[5] = 0 }))
	f.Add(statsFile(48, "", nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ReadStatsSchema(bytes.NewReader(b))
		if err != nil {
			return
		}
		m, err := s.Read(bytes.NewReader(b))
		if err == nil && len(m) > len(s.Descs) {
			t.Fatalf("%d values from %d descriptors", len(m), len(s.Descs))
		}
	})
}

package vsock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// fuzzStream is a host stream that sends a few bytes, then EOF, and
// discards what it is sent.
type fuzzStream struct{ left int }

func (s *fuzzStream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), s.left)
	s.left -= n
	return n, nil
}
func (s *fuzzStream) Write(p []byte) (int, error) { return len(p), nil }
func (s *fuzzStream) Close() error                { return nil }

// fuzzBackend serves even ports and refuses odd ones.
type fuzzBackend struct{}

func (fuzzBackend) ConnectHost(ctx context.Context, cid uint64, port, srcPort uint32) (Stream, error) {
	if port%2 == 1 {
		return nil, errors.New("refused")
	}
	return &fuzzStream{left: int(port % 10000)}, nil
}

func encodePackets(hs ...Header) []byte {
	var out []byte
	for _, h := range hs {
		b := make([]byte, HeaderSize+int(h.Len))
		h.Encode(b)
		out = append(out, b...)
	}
	return out
}

// FuzzPackets feeds a hostile guest's packet stream to the connection
// state machine: no panic, and connections and buffers stay bounded.
func FuzzPackets(f *testing.F) {
	g := func(op uint16, src, dst uint32, n uint32) Header {
		return Header{SrcCID: testGuestCID, DstCID: ParentCID, SrcPort: src, DstPort: dst, Type: VIRTIO_VSOCK_TYPE_STREAM, Op: op, BufAlloc: 4096, Len: n}
	}
	f.Add(encodePackets(g(VIRTIO_VSOCK_OP_REQUEST, 1, 2, 0), g(VIRTIO_VSOCK_OP_RW, 1, 2, 100), g(VIRTIO_VSOCK_OP_SHUTDOWN, 1, 2, 0)))
	f.Add(encodePackets(g(VIRTIO_VSOCK_OP_REQUEST, 1, 3, 0), g(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 1, 3, 0)))
	f.Add(encodePackets(g(VIRTIO_VSOCK_OP_REQUEST, 1, 4000, 0), g(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 1, 4000, 0), g(VIRTIO_VSOCK_OP_RST, 1, 4000, 0)))
	f.Add(encodePackets(g(VIRTIO_VSOCK_OP_RW, 9, 9, 10), g(7, 1, 1, 0), g(0, 0, 0, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		m := newMux(testGuestCID, fuzzBackend{}, slog.New(slog.DiscardHandler), func() {})
		defer m.close()
		pop := func() (rxBuffer, error) { return &fakeRxBuf{size: 64 + len(data)%5000}, nil }
		for len(data) >= HeaderSize {
			h, err := DecodeHeader(data)
			if err != nil {
				t.Fatal(err)
			}
			var enc [HeaderSize]byte
			h.Encode(enc[:])
			if string(enc[:]) != string(data[:HeaderSize]) {
				t.Fatalf("header round trip: got %x, want %x", enc, data[:HeaderSize])
			}
			data = data[HeaderSize:]
			n := min(int(h.Len), len(data), MaxPacketPayloadBytes)
			if int(h.Len) != n {
				m.malformed(h)
			} else {
				// Most fuzzed CIDs are nonsense; keep the source valid
				// half the time so the state machine is reached.
				if h.SrcCID&1 == 0 {
					h.SrcCID = testGuestCID
				}
				if h.DstCID&1 == 0 {
					h.DstCID = ParentCID
				}
				m.handlePacket(h, data[:n])
			}
			data = data[n:]
			m.fillRx(pop, func(rxBuffer) {})
			m.mu.Lock()
			if len(m.conns) > MaxConns || len(m.resets) > MaxPendingResets {
				t.Fatalf("got %d connections and %d resets, want <= %d and <= %d", len(m.conns), len(m.resets), MaxConns, MaxPendingResets)
			}
			for _, c := range m.conns {
				if c.in.Len() > ConnBufBytes || c.out.Len() > OutBufBytes {
					t.Fatalf("got %d/%d bytes buffered, want <= %d/%d", c.in.Len(), c.out.Len(), ConnBufBytes, OutBufBytes)
				}
			}
			m.mu.Unlock()
		}
	})
}

// FuzzDecodeHeader checks DecodeHeader on arbitrary bytes.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(make([]byte, HeaderSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if len(b) < HeaderSize {
			if err == nil {
				t.Fatalf("got nil error for %d bytes, want an error", len(b))
			}
			return
		}
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		_ = h.String()
	})
}

// FuzzStateMachine drives the connection state machine with compact
// records (8 bytes each: op, ports, flags, length, buf_alloc, fwd_cnt) so
// that the fuzzer reaches deep states quickly; the invariants are those
// of FuzzPackets.
func FuzzStateMachine(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 4, 0, 5, 0, 0, 0, 100, 0, 4, 0, 4, 0, 0, 3, 0, 0, 4, 0})
	f.Add([]byte{1, 1, 2, 0, 0, 0, 1, 0, 7, 1, 2, 0, 0, 0, 1, 0, 6, 1, 2, 0, 0, 0, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		m := newMux(testGuestCID, fuzzBackend{}, slog.New(slog.DiscardHandler), func() {})
		defer m.close()
		payload := make([]byte, MaxPacketPayloadBytes+1)
		for ; len(data) >= 8; data = data[8:] {
			r := data[:8]
			h := Header{
				SrcCID:   testGuestCID,
				DstCID:   ParentCID - uint64(r[1]>>7), // parent or host.
				SrcPort:  uint32(r[1] & 3),
				DstPort:  uint32(r[2] % 6),
				Type:     VIRTIO_VSOCK_TYPE_STREAM,
				Op:       uint16(r[0] % 9),
				Flags:    uint32(r[3] % 4),
				BufAlloc: uint32(r[6]) << 10,
				FwdCnt:   uint32(r[7]) << 6,
			}
			h.Len = uint32(int(r[4])|int(r[5])<<8) % uint32(len(payload))
			if h.Op != VIRTIO_VSOCK_OP_RW {
				h.Len = 0
			}
			m.handlePacket(h, payload[:h.Len])
			if r[3]&4 == 0 {
				m.fillRx(func() (rxBuffer, error) { return &fakeRxBuf{size: 44 + int(r[5])*16}, nil }, func(rxBuffer) {})
			}
			m.mu.Lock()
			if len(m.conns) > MaxConns || len(m.resets) > MaxPendingResets {
				t.Fatalf("got %d connections and %d resets", len(m.conns), len(m.resets))
			}
			for _, c := range m.conns {
				if c.in.Len() > ConnBufBytes || c.out.Len() > OutBufBytes {
					t.Fatalf("got %d/%d bytes buffered, want <= %d/%d", c.in.Len(), c.out.Len(), ConnBufBytes, OutBufBytes)
				}
			}
			m.mu.Unlock()
		}
	})
}

package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/nitrovm/nitrovm/internal/devices/devicetest"
	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/memory"
)

// Test queue layout in guest memory.
const (
	tDesc  = 0x1000
	tAvail = 0x2000
	tUsed  = 0x3000
	tBuf   = 0x10000
	tRAM   = 1 << 20
)

type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

const (
	fNext     = 1
	fWrite    = 2
	fIndirect = 4
)

func putDescs(t testing.TB, mem *memory.Guest, at uint64, ds []desc) {
	t.Helper()
	for i, d := range ds {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[0:], d.addr)
		binary.LittleEndian.PutUint32(b[8:], d.len)
		binary.LittleEndian.PutUint16(b[12:], d.flags)
		binary.LittleEndian.PutUint16(b[14:], d.next)
		if err := mem.Write(at+16*uint64(i), b[:]); err != nil {
			t.Fatal(err)
		}
	}
}

// publish puts heads on the available ring, starting at slot 0.
func publish(t testing.TB, mem *memory.Guest, heads ...uint16) {
	t.Helper()
	for i, h := range heads {
		if err := mem.PutUint16(tAvail+4+2*uint64(i), h); err != nil {
			t.Fatal(err)
		}
	}
	if err := mem.PutUint16(tAvail+2, uint16(len(heads))); err != nil {
		t.Fatal(err)
	}
}

func TestNewQueue(t *testing.T) {
	mem := devicetest.NewMemory(tRAM)
	tests := []struct {
		name              string
		size              uint16
		desc, avail, used uint64
		ok                bool
	}{
		{"ok", 8, tDesc, tAvail, tUsed, true},
		{"max size", 32768, 0, 0x80000, 0x90000, true},
		{"size 0", 0, tDesc, tAvail, tUsed, false},
		{"size 6", 6, tDesc, tAvail, tUsed, false},
		{"size over max", 65535, tDesc, tAvail, tUsed, false},
		{"desc align", 8, tDesc + 8, tAvail, tUsed, false},
		{"avail align", 8, tDesc, tAvail + 1, tUsed, false},
		{"used align", 8, tDesc, tAvail, tUsed + 2, false},
		{"desc outside", 8, tRAM, tAvail, tUsed, false},
		{"avail wraps", 8, tDesc, ^uint64(0) - 1, tUsed, false},
		{"used past end", 8, tDesc, tAvail, tRAM - 16, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := virtio.NewQueue(mem, tc.size, tc.desc, tc.avail, tc.used)
			if got := err == nil; got != tc.ok {
				t.Fatalf("got err %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && q.Size() != tc.size {
				t.Fatalf("got size %d, want %d", q.Size(), tc.size)
			}
		})
	}
}

func TestPopMalformed(t *testing.T) {
	tests := []struct {
		name  string
		descs []desc
		extra func(mem *memory.Guest)
	}{
		{"index out of range", []desc{{tBuf, 4, fNext, 8}}, nil},
		{"loop", []desc{{tBuf, 4, fNext, 1}, {tBuf, 4, fNext, 0}}, nil},
		{"self loop", []desc{{tBuf, 4, fNext, 0}}, nil},
		{"buffer outside RAM", []desc{{tRAM - 2, 4, 0, 0}}, nil},
		{"buffer wraps", []desc{{^uint64(0) - 1, 4, 0, 0}}, nil},
		{"readable after writable", []desc{{tBuf, 4, fWrite | fNext, 1}, {tBuf, 4, 0, 0}}, nil},
		{"readable after empty writable", []desc{{tBuf, 0, fWrite | fNext, 1}, {tBuf, 4, 0, 0}}, nil},
		{"indirect with next", []desc{{0x5000, 16, fIndirect | fNext, 1}, {tBuf, 4, 0, 0}}, nil},
		{"indirect len not multiple", []desc{{0x5000, 20, fIndirect, 0}}, nil},
		{"indirect len zero", []desc{{0x5000, 0, fIndirect, 0}}, nil},
		{"indirect too many entries", []desc{{0x5000, 16 * 9, fIndirect, 0}}, nil},
		{"indirect outside RAM", []desc{{tRAM - 16, 32, fIndirect, 0}}, nil},
		{"indirect after direct", []desc{{tBuf, 4, fNext, 1}, {0x5000, 16, fIndirect, 0}}, nil},
		{"nested indirect", []desc{{0x5000, 32, fIndirect, 0}}, func(mem *memory.Guest) {
			putDescs(t, mem, 0x5000, []desc{{tBuf, 4, fNext, 1}, {0x6000, 16, fIndirect, 0}})
		}},
		{"indirect loop", []desc{{0x5000, 32, fIndirect, 0}}, func(mem *memory.Guest) {
			putDescs(t, mem, 0x5000, []desc{{tBuf, 4, fNext, 1}, {tBuf, 4, fNext, 0}})
		}},
		{"indirect next out of table", []desc{{0x5000, 32, fIndirect, 0}}, func(mem *memory.Guest) {
			putDescs(t, mem, 0x5000, []desc{{tBuf, 4, fNext, 2}})
		}},
		{"indirect buffer outside RAM", []desc{{0x5000, 16, fIndirect, 0}}, func(mem *memory.Guest) {
			putDescs(t, mem, 0x5000, []desc{{tRAM, 1, 0, 0}})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := devicetest.NewMemory(tRAM)
			q, err := virtio.NewQueue(mem, 8, tDesc, tAvail, tUsed)
			if err != nil {
				t.Fatal(err)
			}
			putDescs(t, mem, tDesc, tc.descs)
			if tc.extra != nil {
				tc.extra(mem)
			}
			publish(t, mem, 0)
			c, err := q.Pop()
			if !errors.Is(err, virtio.ErrMalformedChain) {
				t.Fatalf("got %v, want ErrMalformedChain", err)
			}
			if c == nil || c.Head() != 0 || c.ReadableLen() != 0 || c.WritableLen() != 0 {
				t.Fatalf("got chain %+v, want empty chain with head 0", c)
			}
			if err := q.Push(c); err != nil {
				t.Fatalf("got push error %v, want nil", err)
			}
			if idx, _ := mem.Uint16(tUsed + 2); idx != 1 {
				t.Fatalf("got used idx %d, want 1", idx)
			}
			if n, _ := mem.Uint32(tUsed + 8); n != 0 {
				t.Fatalf("got used len %d, want 0", n)
			}
			if c, err := q.Pop(); c != nil || err != nil {
				t.Fatalf("got %v %v, want empty queue", c, err)
			}
		})
	}
}

func TestPopAvailIndexJump(t *testing.T) {
	mem := devicetest.NewMemory(tRAM)
	q, err := virtio.NewQueue(mem, 8, tDesc, tAvail, tUsed)
	if err != nil {
		t.Fatal(err)
	}
	_ = mem.PutUint16(tAvail+2, 9)
	c, err := q.Pop()
	if !errors.Is(err, virtio.ErrQueueBroken) || c != nil {
		t.Fatalf("got %v %v, want nil, ErrQueueBroken", c, err)
	}
}

// abcdefgQueue returns guest memory with "abc" at tBuf and "defg" at
// tBuf+0x100, and a queue of 8 on it.
func abcdefgQueue(t *testing.T) (*memory.Guest, *virtio.Queue) {
	t.Helper()
	mem := devicetest.NewMemory(tRAM)
	q, err := virtio.NewQueue(mem, 8, tDesc, tAvail, tUsed)
	if err != nil {
		t.Fatal(err)
	}
	_ = mem.Write(tBuf, []byte("abc"))
	_ = mem.Write(tBuf+0x100, []byte("defg"))
	return mem, q
}

func TestChainReadWrite(t *testing.T) {
	mem, q := abcdefgQueue(t)
	// Head 2 -> indirect table: readable 3, readable 0, readable 4, writable 2, writable 3.
	putDescs(t, mem, tDesc, []desc{{}, {}, {0x5000, 5 * 16, fIndirect, 0}})
	putDescs(t, mem, 0x5000, []desc{
		{tBuf, 3, fNext, 1}, {tBuf, 0, fNext, 2}, {tBuf + 0x100, 4, fNext, 3},
		{tBuf + 0x200, 2, fWrite | fNext, 4}, {tBuf + 0x300, 3, fWrite, 0},
	})
	publish(t, mem, 2)
	c, err := q.Pop()
	if err != nil {
		t.Fatal(err)
	}
	if c.Head() != 2 || c.ReadableLen() != 7 || c.WritableLen() != 5 {
		t.Fatalf("got head %d readable %d writable %d, want 2 7 5", c.Head(), c.ReadableLen(), c.WritableLen())
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "abcdefg" {
		t.Fatalf("got %q %v, want abcdefg", got, err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("got %d %v, want 0 EOF", n, err)
	}
	n, err := c.Write([]byte("123456"))
	if n != 5 || !errors.Is(err, io.ErrShortWrite) || c.Written() != 5 {
		t.Fatalf("got %d %v written %d, want 5 ErrShortWrite 5", n, err, c.Written())
	}
	if err := q.Push(c); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(c); err == nil {
		t.Fatal("got nil error on double push, want error")
	}
	b := make([]byte, 3)
	_ = mem.Read(tBuf+0x300, b)
	if string(b) != "345" {
		t.Fatalf("got %q, want 345", b)
	}
	if id, _ := mem.Uint32(tUsed + 4); id != 2 {
		t.Fatalf("got used id %d, want 2", id)
	}
	if n, _ := mem.Uint32(tUsed + 8); n != 5 {
		t.Fatalf("got used len %d, want 5", n)
	}
	other, _ := virtio.NewQueue(mem, 8, tDesc, tAvail, tUsed)
	if err := other.Push(c); err == nil {
		t.Fatal("got nil error pushing to another queue, want error")
	}
}

// TestChainPeekDiscard lends a chain's readable bytes in place: Peek
// never consumes, stops at n and at the writable part, and Discard
// consumes across buffers as Read does.
func TestChainPeekDiscard(t *testing.T) {
	for _, tc := range []struct {
		name    string
		skip    int // read before peeking
		peek    int
		want    []string
		discard int
		next    string // what Read returns after the discard
	}{
		{"all", 0, 100, []string{"abc", "defg"}, 7, ""},
		{"within first", 0, 2, []string{"ab"}, 2, "cdefg"},
		{"across buffers", 1, 4, []string{"bc", "de"}, 4, "fg"},
		{"from second", 3, 100, []string{"defg"}, 1, "efg"},
		{"discard more than readable", 0, 0, nil, 50, ""},
		{"nothing left", 7, 10, nil, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, q := abcdefgQueue(t)
			putDescs(t, mem, tDesc, []desc{
				{tBuf, 3, fNext, 1}, {tBuf + 0x100, 4, fNext, 2}, {tBuf + 0x200, 8, fWrite, 0},
			})
			publish(t, mem, 0)
			c, err := q.Pop()
			if err != nil {
				t.Fatal(err)
			}
			if tc.skip > 0 {
				if _, err := io.ReadFull(c, make([]byte, tc.skip)); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, s := range c.PeekReadable(nil, tc.peek) {
				got = append(got, string(s))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("peek %d: got %q, want %q", tc.peek, got, tc.want)
			}
			wantDiscard := min(tc.discard, 7-tc.skip)
			if n := c.Discard(tc.discard); n != wantDiscard {
				t.Fatalf("discard %d: got %d, want %d", tc.discard, n, wantDiscard)
			}
			rest, _ := io.ReadAll(c)
			if string(rest) != tc.next {
				t.Fatalf("after discard read %q, want %q", rest, tc.next)
			}
		})
	}
}

func TestChainTooLong(t *testing.T) {
	mem := devicetest.NewMemory(tRAM)
	q, _ := virtio.NewQueue(mem, 4, tDesc, tAvail, tUsed)
	// A chain through all 4 descriptors is fine; a 5th (looping) is not.
	putDescs(t, mem, tDesc, []desc{{tBuf, 1, fNext, 1}, {tBuf, 1, fNext, 2}, {tBuf, 1, fNext, 3}, {tBuf, 1, 0, 0}})
	publish(t, mem, 0)
	if _, err := q.Pop(); err != nil {
		t.Fatalf("got %v, want nil for a chain of queue size", err)
	}
}

// FuzzQueue feeds hostile descriptor tables, rings and indirect tables to
// Pop: it must never panic, every chain's lengths must match what Read and
// Write see, and work per Pop is bounded. The input is compact so that the
// fuzzer reaches interesting shapes: byte 0 picks the size (bits 0-2),
// VIRTIO_RING_F_EVENT_IDX (bit 6) and used_event's distance behind the
// available index (bits 3-5, bit 7 adds 0x8000), bytes 1-2 the available
// index, then one le16 head per ring slot, then 6 bytes per descriptor
// (addr/64 le16, len le16 with 0xffff meaning a huge length, flags, next);
// flags bit 7 makes the address hostile (above guest RAM). The rest of the
// input is copied raw to guest RAM at 0x1000, where indirect tables may
// point. With event indices, interrupts must follow vring_need_event on
// the guest's used_event, and a Pop that finds the ring empty must publish
// avail_event at the next index.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{2, 2, 0, 0, 0, 2, 0, 0, 0,
		0x40, 0, 16, 0, fNext, 1, // 0: readable 16 bytes at 0x1000, next 1
		0x41, 0, 16, 0, fWrite, 0, // 1: writable
		0x80, 0, 32, 0, fIndirect, 0, // 2: indirect table at 0x2000
		0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, fNext, 0})
	f.Add([]byte{1, 0xff, 0xff})
	f.Add([]byte{0x4a, 3, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 8, 0, fWrite, 0, 0x41, 0, 8, 0, 0, 0})
	f.Add([]byte{0xc1, 1, 0, 0, 0, 0x40, 0, 8, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const ram = 0x4000
		if len(data) < 3 || len(data) > 0x3000 {
			return
		}
		mem := devicetest.NewMemory(ram)
		size := uint16(1) << (data[0] & 7 % 6) // up to 32.
		eventIdx := data[0]&0x40 != 0
		const descAt, availAt, usedAt = 0x0, 0x400, 0x600
		availIdx := binary.LittleEndian.Uint16(data[1:])
		_ = mem.PutUint16(availAt+2, availIdx)
		usedEvent := availIdx - uint16(data[0]>>3&7)
		if data[0]&0x80 != 0 {
			usedEvent += 0x8000
		}
		_ = mem.PutUint16(availAt+4+2*uint64(size), usedEvent)
		rest := data[3:]
		for i := 0; i < int(size) && len(rest) >= 2; i++ {
			_ = mem.PutUint16(availAt+4+2*uint64(i), binary.LittleEndian.Uint16(rest)%64)
			rest = rest[2:]
		}
		var ds []desc
		for i := 0; i < int(size) && len(rest) >= 6; i++ {
			d := desc{
				addr:  uint64(binary.LittleEndian.Uint16(rest)) * 64,
				len:   uint32(binary.LittleEndian.Uint16(rest[2:])),
				flags: uint16(rest[4] & 7),
				next:  uint16(rest[5]),
			}
			if d.len == 0xffff {
				d.len = ^uint32(0)
			}
			if rest[4]&0x80 != 0 {
				d.addr |= 0xffff_ffff_fff0_0000
			}
			ds = append(ds, d)
			rest = rest[6:]
		}
		putDescs(t, mem, descAt, ds)
		_ = mem.Write(0x1000, rest)
		q, err := virtio.NewQueue(mem, size, descAt, availAt, usedAt)
		if err != nil {
			t.Fatalf("NewQueue: %v", err)
		}
		q.SetEventIdx(eventIdx)
		availEventAt := uint64(usedAt + 4 + 8*uint64(size))
		_ = mem.PutUint16(availEventAt, 0xa5a5)
		var popped, signalled uint16
		for i := 0; i <= int(size); i++ {
			c, err := q.Pop()
			if err != nil && c == nil {
				if !errors.Is(err, virtio.ErrQueueBroken) {
					t.Fatalf("got %v with nil chain, want ErrQueueBroken", err)
				}
				return
			}
			if c == nil {
				// (Chains may alias the rings, so only what this Pop
				// just wrote is checked.)
				if ae, _ := mem.Uint16(availEventAt); eventIdx && ae != popped {
					t.Fatalf("got avail_event %d after draining %d chains, want %d", ae, popped, popped)
				}
				return
			}
			popped++
			if err != nil && (c.ReadableLen() != 0 || c.WritableLen() != 0) {
				t.Fatalf("got lengths %d/%d with error, want 0/0", c.ReadableLen(), c.WritableLen())
			}
			// The lent view of the first half equals what Read returns.
			half := int(c.ReadableLen() / 2)
			var lent []byte
			for _, s := range c.PeekReadable(nil, half) {
				lent = append(lent, s...)
			}
			if len(lent) != half {
				t.Fatalf("peeked %d bytes, want %d", len(lent), half)
			}
			b, rerr := io.ReadAll(c)
			if rerr != nil || uint32(len(b)) != c.ReadableLen() {
				t.Fatalf("read %d bytes (%v), want %d", len(b), rerr, c.ReadableLen())
			}
			if !bytes.Equal(lent, b[:half]) {
				t.Fatalf("peeked %x, read %x", lent, b[:half])
			}
			if k := c.Discard(1); k != 0 {
				t.Fatalf("discarded %d bytes after reading all, want 0", k)
			}
			n, _ := c.Write(make([]byte, int(c.WritableLen())+1))
			if uint32(n) != c.WritableLen() || c.Written() != c.WritableLen() {
				t.Fatalf("wrote %d, want %d", n, c.WritableLen())
			}
			if err := q.Push(c); err != nil {
				t.Fatalf("push: %v", err)
			}
			if i%2 == 0 {
				continue // signal every other push: batches of 1 and 2.
			}
			got := q.NeedInterrupt()
			flags, _ := mem.Uint16(availAt) // chains may have overwritten it.
			want := flags&1 == 0
			if eventIdx {
				usedEvent, _ = mem.Uint16(availAt + 4 + 2*uint64(size)) // chains may have overwritten it.
				want = popped-usedEvent-1 < popped-signalled
			}
			if got != want {
				t.Fatalf("used %d -> %d, used_event %d: got NeedInterrupt %v, want %v", signalled, popped, usedEvent, got, want)
			}
			signalled = popped
		}
		t.Fatalf("popped %d chains from a queue of size %d", size+1, size)
	})
}

// BenchmarkPopPush measures one 2-descriptor chain through Pop, Read,
// Write and Push.
func BenchmarkPopPush(b *testing.B) {
	mem := devicetest.NewMemory(tRAM)
	q, err := virtio.NewQueue(mem, 256, tDesc, tAvail, tUsed)
	if err != nil {
		b.Fatal(err)
	}
	putDescs(b, mem, tDesc, []desc{{tBuf, 64, fNext, 1}, {tBuf + 0x1000, 64, fWrite, 0}})
	buf := make([]byte, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = mem.PutUint16(tAvail+4+2*uint64(i%256), 0)
		_ = mem.PutUint16(tAvail+2, uint16(i+1))
		c, err := q.Pop()
		if err != nil || c == nil {
			b.Fatalf("pop: %v %v", c, err)
		}
		_, _ = c.Read(buf)
		_, _ = c.Write(buf)
		if err := q.Push(c); err != nil {
			b.Fatal(err)
		}
	}
}

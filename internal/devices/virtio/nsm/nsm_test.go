package nsm_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/nitrovm/nitrovm/internal/devices/devicetest"
	"github.com/nitrovm/nitrovm/internal/devices/virtio"
	"github.com/nitrovm/nitrovm/internal/devices/virtio/nsm"
)

// fakeProcessor answers "resp:" + request, or calls fn if set.
type fakeProcessor struct {
	fn func(req []byte) []byte
}

func (f *fakeProcessor) Process(req []byte) []byte {
	if f.fn != nil {
		return f.fn(req)
	}
	return append([]byte("resp:"), req...)
}

const timeout = 5 * time.Second

func setup(t *testing.T, p nsm.Processor) (*devicetest.Driver, *virtio.MMIO, *devicetest.IRQRecorder) {
	t.Helper()
	mem := devicetest.NewMemory(8 << 20)
	irq := &devicetest.IRQRecorder{}
	m := virtio.NewMMIO(nsm.New(p, nil), mem, irq, nil)
	d, err := devicetest.NewDriver(m, mem, devicetest.DriverOptions{})
	if err != nil {
		t.Fatalf("NewDriver: %v", err)
	}
	t.Cleanup(m.Reset)
	return d, m, irq
}

func errorName(t *testing.T, b []byte) string {
	t.Helper()
	var m map[string]string
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return m["Error"]
}

func TestErrorResponseEncoding(t *testing.T) {
	for _, name := range []string{nsm.ErrorInvalidArgument, nsm.ErrorInputTooLarge, nsm.ErrorBufferTooSmall, nsm.ErrorInternalError, "AVeryLongErrorNameOfMoreThan24Bytes"} {
		got := nsm.ErrorResponse(name)
		want, err := cbor.Marshal(map[string]string{"Error": name})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %x, want %x", got, want)
		}
	}
}

func TestDeviceBasics(t *testing.T) {
	d := nsm.New(&fakeProcessor{}, nil)
	if d.DeviceID() != 33 || d.Features() != 0 || len(d.QueueMaxSizes()) != 1 {
		t.Fatalf("got id %d features %#x queues %v, want 33 0 [one]", d.DeviceID(), d.Features(), d.QueueMaxSizes())
	}
	b := []byte{1, 2, 3}
	d.ReadConfig(0, b)
	if !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Fatalf("got config %x, want zeros", b)
	}
	if err := d.Activate(devicetest.NewMemory(1<<20), nil, nil); err == nil {
		t.Fatal("got nil error activating with 0 queues, want error")
	}
}

// TestLinuxFraming drives the device as drivers/misc/nsm.c does: a request
// chain and a response chain, one kick, two used entries in that order.
func TestLinuxFraming(t *testing.T) {
	d, _, irq := setup(t, &fakeProcessor{})
	req, err := d.Add(0, [][]byte{[]byte("DescribeNSM")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Add(0, nil, []uint32{nsm.ResponseMaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	d.Kick(0)
	u, err := d.WaitUsed(0, 2, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if u[0].Head != req || u[0].Len != 0 {
		t.Fatalf("got first used %+v, want request head %d len 0", u[0], req)
	}
	if u[1].Head != resp || string(u[1].Data) != "resp:DescribeNSM" {
		t.Fatalf("got second used head %d data %q, want %d %q", u[1].Head, u[1].Data, resp, "resp:DescribeNSM")
	}
	if !irq.WaitCount(1, timeout) {
		t.Fatal("got no interrupt, want one")
	}
}

func TestSingleChainFraming(t *testing.T) {
	d, _, _ := setup(t, &fakeProcessor{})
	head, err := d.Add(0, [][]byte{[]byte("Get"), []byte("Random")}, []uint32{8, 0x1000})
	if err != nil {
		t.Fatal(err)
	}
	d.Kick(0)
	u, err := d.WaitUsed(0, 1, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if u[0].Head != head || string(u[0].Data) != "resp:GetRandom" {
		t.Fatalf("got %+v, want head %d data resp:GetRandom", u[0], head)
	}
}

func TestBadFraming(t *testing.T) {
	big := func([]byte) []byte { return make([]byte, 100) }
	tests := []struct {
		name     string
		fn       func([]byte) []byte
		chains   [][2][]uint32 // per chain: readable sizes, writable sizes.
		wantUsed []string      // per used entry: error name, "" for 0 bytes, or "ok".
	}{
		{"request too large", nil, [][2][]uint32{{{nsm.RequestMaxBytes + 1}, nil}, {nil, {nsm.ResponseMaxBytes}}}, []string{"", nsm.ErrorInputTooLarge}},
		{"request too large split", nil, [][2][]uint32{{{0x800, 0x801}, {0x100}}}, []string{nsm.ErrorInputTooLarge}},
		{"response buffer too small", big, [][2][]uint32{{{4}, nil}, {nil, {50}}}, []string{"", nsm.ErrorBufferTooSmall}},
		{"no room even for the error", big, [][2][]uint32{{{4}, {8}}}, []string{""}},
		{"response without request", nil, [][2][]uint32{{nil, {0x100}}}, []string{nsm.ErrorInvalidArgument}},
		{"two requests in a row", nil, [][2][]uint32{{{4}, nil}, {{5}, nil}, {nil, {0x100}}}, []string{"", "", "ok"}},
		{"empty chain", nil, [][2][]uint32{{{0}, {0}}}, []string{""}},
		{"empty response buffer", nil, [][2][]uint32{{{4}, nil}, {nil, {0}}, {nil, {0x100}}}, []string{"", "", nsm.ErrorInvalidArgument}},
		{"processor returns nil", func([]byte) []byte { return nil }, [][2][]uint32{{{4}, {0x100}}}, []string{nsm.ErrorInternalError}},
		{"processor panics", func([]byte) []byte { panic("boom") }, [][2][]uint32{{{4}, {0x100}}}, []string{nsm.ErrorInternalError}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _ := setup(t, &fakeProcessor{fn: tc.fn})
			for _, c := range tc.chains {
				var r [][]byte
				for _, n := range c[0] {
					r = append(r, bytes.Repeat([]byte{'x'}, int(n)))
				}
				if _, err := d.Add(0, r, c[1]); err != nil {
					t.Fatal(err)
				}
			}
			d.Kick(0)
			u, err := d.WaitUsed(0, len(tc.wantUsed), timeout)
			if err != nil {
				t.Fatalf("got %d used (%v), want %d", len(u), err, len(tc.wantUsed))
			}
			for i, want := range tc.wantUsed {
				switch want {
				case "":
					if u[i].Len != 0 {
						t.Fatalf("used %d: got len %d, want 0", i, u[i].Len)
					}
				case "ok":
					if !bytes.HasPrefix(u[i].Data, []byte("resp:")) {
						t.Fatalf("used %d: got %q, want a response", i, u[i].Data)
					}
				default:
					if got := errorName(t, u[i].Data); got != want {
						t.Fatalf("used %d: got error %q, want %q", i, got, want)
					}
				}
			}
			// The device still works afterwards.
			if _, err := d.Add(0, [][]byte{[]byte("again")}, []uint32{0x100}); err != nil {
				t.Fatal(err)
			}
			d.Kick(0)
			u, err = d.WaitUsed(0, 1, timeout)
			if err != nil || u[len(u)-1].Len == 0 {
				t.Fatalf("got %+v %v after bad framing, want a response", u, err)
			}
		})
	}
}

func TestMalformedChainDoesNotWedge(t *testing.T) {
	d, _, _ := setup(t, &fakeProcessor{})
	// Descriptor 0 points outside guest RAM.
	if err := d.WriteDesc(0, 0, devicetest.Desc{Addr: 1 << 40, Len: 16}); err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(0, 0); err != nil {
		t.Fatal(err)
	}
	d.Kick(0)
	u, err := d.WaitUsed(0, 1, timeout)
	if err != nil || u[0].Head != 0 || u[0].Len != 0 {
		t.Fatalf("got %+v %v, want head 0 returned with 0 bytes", u, err)
	}
}

func TestManyInFlight(t *testing.T) {
	d, _, _ := setup(t, &fakeProcessor{})
	const n = 20
	var want []uint16
	for i := 0; i < n; i++ {
		var req [4]byte
		binary.LittleEndian.PutUint32(req[:], uint32(i))
		r, err := d.Add(0, [][]byte{req[:]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := d.Add(0, nil, []uint32{nsm.ResponseMaxBytes})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r, w)
	}
	d.Kick(0)
	u, err := d.WaitUsed(0, 2*n, timeout)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if u[i].Head != want[i] {
			t.Fatalf("used %d: got head %d, want %d", i, u[i].Head, want[i])
		}
		if i%2 == 1 && binary.LittleEndian.Uint32(u[i].Data[5:]) != uint32(i/2) {
			t.Fatalf("used %d: got %x, want request %d echoed", i, u[i].Data, i/2)
		}
	}
}

// TestProcessOffVCPU checks that Kick returns while the processor is busy:
// requests run on the device goroutine, not the vCPU thread.
func TestProcessOffVCPU(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	d, m, _ := setup(t, &fakeProcessor{fn: func(req []byte) []byte {
		started <- struct{}{}
		<-release
		return []byte("done")
	}})
	if _, err := d.Add(0, [][]byte{{1}}, []uint32{16}); err != nil {
		t.Fatal(err)
	}
	d.Kick(0) // must not block.
	select {
	case <-started:
	case <-time.After(timeout):
		t.Fatal("processor not called")
	}
	close(release)
	if u, err := d.WaitUsed(0, 1, timeout); err != nil || string(u[0].Data) != "done" {
		t.Fatalf("got %+v %v, want done", u, err)
	}
	m.Reset()
}

func TestResetWhileBusy(t *testing.T) {
	release := make(chan struct{})
	d, m, _ := setup(t, &fakeProcessor{fn: func(req []byte) []byte {
		<-release
		return []byte("x")
	}})
	if _, err := d.Add(0, [][]byte{{1}}, []uint32{16}); err != nil {
		t.Fatal(err)
	}
	d.Kick(0)
	go func() { time.Sleep(10 * time.Millisecond); close(release) }()
	m.Reset() // waits for the request in progress, then stops.
	if got := m.Status(); got != 0 {
		t.Fatalf("got status %#x, want 0", got)
	}
}

// FuzzFraming posts guest-chosen chain shapes and response sizes: the device
// must never panic and must return every chain.
func FuzzFraming(f *testing.F) {
	f.Add([]byte{4, 0, 0, 0x30, 0}, uint16(20))
	f.Add([]byte{0, 0x10, 1, 0, 0, 0x30, 0, 0}, uint16(0x3001))
	f.Add([]byte{5, 0, 0, 5, 0, 0, 0, 0, 1, 0}, uint16(1))
	f.Fuzz(func(t *testing.T, shapes []byte, respLen uint16) {
		if len(shapes) > 3*32 {
			return
		}
		d, _, _ := setup(t, &fakeProcessor{fn: func([]byte) []byte { return make([]byte, respLen) }})
		added := 0
		for i := 0; i+2 < len(shapes); i += 3 {
			// readable size (0..0x1f00 step 0x100, or small), writable size.
			rl := uint32(shapes[i])
			if rl > 0x20 {
				rl = (rl - 0x20) << 6
			}
			wl := uint32(binary.LittleEndian.Uint16(shapes[i+1:]))
			var r [][]byte
			if rl > 0 || wl == 0 {
				r = [][]byte{make([]byte, rl)}
			}
			var w []uint32
			if wl > 0 {
				w = []uint32{wl}
			}
			if _, err := d.Add(0, r, w); err != nil {
				break
			}
			added++
		}
		if added == 0 {
			return
		}
		d.Kick(0)
		// Every chain comes back except possibly a trailing request-only
		// chain, which waits for its response buffer.
		u, _ := d.WaitUsed(0, added-1, timeout)
		if len(u) < added-1 {
			t.Fatalf("got %d used, want >= %d", len(u), added-1)
		}
		for _, e := range u {
			if e.Len > nsm.ResponseMaxBytes+1 && e.Len > uint32(respLen) {
				t.Fatalf("got used len %d, response only %d", e.Len, respLen)
			}
		}
	})
}

// TestOnIdle: the hook runs once after a burst of requests, IdleDelay after
// the last answer, not for a kick that answered nothing, and not after Reset.
func TestOnIdle(t *testing.T) {
	dev := nsm.New(&fakeProcessor{}, nil)
	calls := make(chan struct{}, 8)
	dev.OnIdle(func() { calls <- struct{}{} })
	mem := devicetest.NewMemory(8 << 20)
	m := virtio.NewMMIO(dev, mem, &devicetest.IRQRecorder{}, nil)
	d, err := devicetest.NewDriver(m, mem, devicetest.DriverOptions{})
	if err != nil {
		t.Fatalf("NewDriver: %v", err)
	}
	t.Cleanup(m.Reset)
	quiet := func(what string) {
		t.Helper()
		select {
		case <-calls:
			t.Fatalf("OnIdle called %s", what)
		case <-time.After(3 * nsm.IdleDelay):
		}
	}
	quiet("after activation, with no request")

	request := func() {
		t.Helper()
		if _, err := d.Add(0, [][]byte{[]byte("DescribePCR")}, []uint32{nsm.ResponseMaxBytes}); err != nil {
			t.Fatal(err)
		}
		d.Kick(0)
		if _, err := d.WaitUsed(0, 1, timeout); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		request()
	}
	select {
	case <-calls:
	case <-time.After(timeout):
		t.Fatal("OnIdle not called after three requests")
	}
	quiet("twice for one burst")

	d.Kick(0) // nothing posted: nothing answered.
	quiet("after a kick that answered nothing")

	request()
	m.Reset()
	quiet("after Reset")
}

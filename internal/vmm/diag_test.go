package vmm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nitrovm/nitrovm/internal/kvm"
)

func TestExitRing(t *testing.T) {
	var g exitRing
	if got, n := g.last(); len(got) != 0 || n != 0 {
		t.Fatalf("empty ring: got %v, %d", got, n)
	}
	for i := range exitRingSize + 5 {
		g.add(exitRecord{reason: kvm.ExitIO, addr: uint64(i)})
	}
	got, n := g.last()
	if n != exitRingSize+5 || len(got) != exitRingSize {
		t.Fatalf("got %d records of %d, want %d of %d", len(got), n, exitRingSize, exitRingSize+5)
	}
	for i, r := range got {
		if want := uint64(i + 5); r.addr != want {
			t.Errorf("record %d: addr %d, want %d (oldest first)", i, r.addr, want)
		}
	}
}

func TestExitRecordString(t *testing.T) {
	tests := []struct {
		r    exitRecord
		want string
	}{
		{exitRecord{at: 1500 * time.Millisecond, reason: kvm.ExitIO, addr: 0x3f8, size: 1, count: 1, write: true, data: 0x41},
			"+1.500000s io out port=0x3f8 size=1 data=0x41"},
		{exitRecord{at: time.Second, reason: kvm.ExitIO, addr: 0x3fd, size: 1, count: 4},
			"+1.000000s io in port=0x3fd size=1 count=4"},
		{exitRecord{reason: kvm.ExitMMIO, addr: 0xd0000050, size: 4, write: true, data: 2},
			"+0.000000s mmio write addr=0xd0000050 size=4 data=0x2"},
		{exitRecord{reason: kvm.ExitMMIO, addr: 0xd0000070, size: 4}, "+0.000000s mmio read addr=0xd0000070 size=4"},
		{exitRecord{reason: kvm.ExitShutdown}, "+0.000000s shutdown"},
		{exitRecord{reason: 99}, "+0.000000s reason_99"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestVCPUStateLines(t *testing.T) {
	s := vcpuState{id: 1, mpState: kvm.MPStateHalted, xcr0: 7, total: 40,
		exits: []exitRecord{{reason: kvm.ExitHLT}}}
	s.regs.RIP = 0xffffffff81000000
	s.sregs.CR0, s.sregs.CR3, s.sregs.CR4, s.sregs.EFER = 0x80050033, 0x1000, 0x3606f0, 0xd01
	s.sregs.IDT = kvm.DTable{Base: 0xfffffe0000000000, Limit: 0xfff}
	s.events.ExceptionInjected, s.events.ExceptionNr, s.events.ExceptionHasErrorCode = 1, 13, 1
	le := binary.LittleEndian
	le.PutUint32(s.lapic.Regs[apicID:], 1<<24)
	le.PutUint32(s.lapic.Regs[apicISR+0x70:], 1<<(0xec-7*32)) // vector 0xec in service.
	le.PutUint32(s.lapic.Regs[apicIRR+0x70:], 1<<31)          // vector 0xff requested.
	le.PutUint32(s.lapic.Regs[apicLVTT:], 0x400ec)
	le.PutUint32(s.lapic.Regs[apicTMICT:], 12345)
	text := strings.Join(s.lines(), "\n")
	for _, want := range []string{
		"vcpu 1 mp_state=halted rip=0xffffffff81000000",
		"cr0=0x80050033 cr2=0x0 cr3=0x1000 cr4=0x3606f0 cr8=0x0 efer=0xd01 apic_base=0x0 xcr0=0x7",
		"idt=0xfffffe0000000000/0xfff",
		"events exception(injected=1 pending=0 nr=13 has_error=1",
		"lapic id=0x1 ",
		"lvt_timer=0x400ec tmict=0x3039",
		"lapic isr=[0xec] irr=[0xff] tmr=[]",
		"vcpu 1 last 1 of 40 exits",
		"vcpu 1   +0.000000s hlt",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("dump lacks %q:\n%s", want, text)
		}
	}
	for _, l := range s.lines() {
		if !strings.HasPrefix(l, "vcpu 1 ") {
			t.Errorf("line %q does not start with the vCPU", l)
		}
	}
	stuck := vcpuState{id: 2, noAnswer: true, total: 3, exits: []exitRecord{{reason: kvm.ExitIntr}}}
	text = strings.Join(stuck.lines(), "\n")
	if !strings.Contains(text, "vcpu 2 thread did not answer") || !strings.Contains(text, "intr") || strings.Contains(text, "rip=") {
		t.Errorf("unanswered vCPU dump:\n%s", text)
	}
}

// TestForeignState checks the dump's warning for state no guest can reach
// by itself, with the values of the nested hangs in
// test/ab/results/concurrent-2cpu.txt (128 MiB guests).
func TestForeignState(t *testing.T) {
	const ram = 128 << 20
	inRAM := func(gpa uint64) bool { return gpa < ram }
	paged := func(cr3 uint64) vcpuState {
		var s vcpuState
		s.sregs.CR0, s.sregs.CR3 = 0x80050033, cr3
		return s
	}
	reset := vcpuState{}
	reset.sregs.CR0 = 0x60000010 // an AP before INIT/SIPI: paging off, CR3 0.
	unanswered := paged(0x101e64000)
	unanswered.noAnswer = true
	tests := []struct {
		name string
		s    vcpuState
		warn bool
	}{
		{"L1 page table as guest CR3 (hang, round 1)", paged(0x101e64000), true},
		{"L1 page table as guest CR3 (hang, round 2)", paged(0x100c8e000), true},
		{"guest kernel page table", paged(0x1829000), false},
		{"guest CR3 with PCID bits", paged(0x61e000 | 0x5), false},
		{"last page of guest RAM", paged(ram - 0x1000), false},
		{"first page past guest RAM", paged(ram), true},
		{"paging off", reset, false},
		{"thread did not answer", unanswered, false},
	}
	for _, tt := range tests {
		notes := foreignState(tt.s, inRAM)
		if got := len(notes) > 0; got != tt.warn {
			t.Errorf("%s: notes %q, want warning %v", tt.name, notes, tt.warn)
		}
		if tt.warn {
			tt.s.notes = notes
			text := strings.Join(tt.s.lines(), "\n")
			if !strings.Contains(text, "WARNING cr3=") || !strings.Contains(text, ForeignStateMarker) {
				t.Errorf("%s: dump lacks the warning:\n%s", tt.name, text)
			}
			// The marker must survive the log's quoting: the nested
			// harness matches it in nitrovm's log (package nested).
			var log bytes.Buffer
			slog.New(slog.NewTextHandler(&log, nil)).Warn("vm state", "text", text)
			if !strings.Contains(log.String(), ForeignStateMarker) {
				t.Errorf("%s: the log line lacks %q:\n%s", tt.name, ForeignStateMarker, log.String())
			}
		}
	}
}

// TestLogDumpFraming checks that a dump in the log (slog text, as a
// supervisor writes it) is framed by records whose msg is DumpBeginsMsg
// and DumpEndsMsg, with every vCPU line, the WARNING line included, in
// between: test/e2e copies dumps out of supervisor logs by these two.
func TestLogDumpFraming(t *testing.T) {
	var log bytes.Buffer
	v := &VM{logger: slog.New(slog.NewTextHandler(&log, nil))}
	s := vcpuState{id: 0, exits: []exitRecord{{reason: kvm.ExitHLT}}}
	s.sregs.CR0, s.sregs.CR3 = 0x80050033, 0x101e64000
	s.notes = foreignState(s, func(gpa uint64) bool { return gpa < 128<<20 })
	v.logDump("no heartbeat within 20s", []vcpuState{s}, true)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != len(s.lines())+2 {
		t.Fatalf("got %d log lines, want the %d vCPU lines and 2 more:\n%s", len(lines), len(s.lines()), log.String())
	}
	if first := lines[0]; !strings.Contains(first, `msg="`+DumpBeginsMsg+`"`) || !strings.Contains(first, `cause="no heartbeat within 20s"`) {
		t.Errorf("first line %q: want msg=%q with the cause", first, DumpBeginsMsg)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, `msg="`+DumpEndsMsg+`"`) {
		t.Errorf("last line %q: want msg=%q", last, DumpEndsMsg)
	}
	warned := false
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.Contains(l, `msg="vm state" text="vcpu 0 `) {
			t.Errorf("line %q inside the dump is not a vCPU line", l)
		}
		warned = warned || strings.Contains(l, ForeignStateMarker)
	}
	if !warned {
		t.Errorf("no WARNING line inside the dump:\n%s", log.String())
	}
}

// EFER and CR4 bits of the test vCPUs (Intel SDM Vol. 3A, 2.2.1 and 2.5).
const (
	testEFERLMA = 1 << 10
	testEFERNXE = 1 << 11
	testCR4LA57 = 1 << 12
)

// TestKernelMaps: one map per distinct CR3 of the vCPUs in 4-level long
// mode, from the guest's tables; reset, 5-level and silent vCPUs are
// skipped, and a broken table is reported, not fatal.
func TestKernelMaps(t *testing.T) {
	ram := make([]byte, 0x8000)
	put := func(gpa, v uint64) { binary.LittleEndian.PutUint64(ram[gpa:], v) }
	put(0x1000+511*8, 0x2000|1)
	put(0x2000+510*8, 0x3000|1)
	put(0x3000+8*8, 0x1000000|1|0x80) // 2 MiB of text at 0xffffffff81000000
	// The IDT at 0xfffffe0000000000 (Linux's read-only cpu_entry_area
	// mapping), one 4 KiB NX page; the GDT page after it is not mapped.
	put(0x1000+508*8, 0x4000|1)
	put(0x4000, 0x5000|1)
	put(0x5000, 0x6000|1)
	put(0x6000, 0x7000|1|1<<63)
	read := func(gpa uint64) (uint64, error) {
		if gpa > uint64(len(ram))-8 {
			return 0, errors.New("outside guest RAM")
		}
		return binary.LittleEndian.Uint64(ram[gpa:]), nil
	}
	long := func(id int, cr3 uint64) vcpuState {
		return vcpuState{id: id, sregs: kvm.Sregs{CR0: cr0PG | 1, CR3: cr3, EFER: testEFERLMA | testEFERNXE,
			IDT: kvm.DTable{Base: 0xfffffe0000000000, Limit: 0xfff}, GDT: kvm.DTable{Base: 0xfffffe0000001000, Limit: 0x7f}}}
	}
	la57 := long(3, 0x1000)
	la57.sregs.CR4 = testCR4LA57
	silent := long(4, 0x2000)
	silent.noAnswer = true
	states := []vcpuState{
		{id: 0, sregs: kvm.Sregs{CR0: 0x60000010}}, // reset by a triple fault
		long(1, 0x1000), long(2, 0x1000), la57, silent,
		long(5, 0x7000_0000),
	}
	got := strings.Join(kernelMaps(states, read), "\n")
	want := strings.Join([]string{
		"kernel map cr3=0x1000 va=0xfffffe0000000000-0xfffffe0000001000 pa=0x7000 prot=r-- page=4K",
		"kernel map cr3=0x1000 va=0xffffffff81000000-0xffffffff81200000 pa=0x1000000 prot=r-x page=2M",
		"kernel map cr3=0x70000000: page walk: entry at 0x70000fe0 for va 0xfffffe0000000000: outside guest RAM",
		"kernel map cr3=0x70000000: page walk: entry at 0x70000ff8 for va 0xffffffff80000000: outside guest RAM",
	}, "\n")
	if got != want {
		t.Errorf("kernel maps:\n%s\nwant:\n%s", got, want)
	}
}

// TestMapWindows: the kernel image, then the IDT, GDT and TSS pages of
// long-mode vCPUs, merged; lower-half and wrapping tables are left out.
func TestMapWindows(t *testing.T) {
	st := func(idt, gdt, tr uint64, limit uint16) vcpuState {
		return vcpuState{sregs: kvm.Sregs{CR0: cr0PG, EFER: testEFERLMA, IDT: kvm.DTable{Base: idt, Limit: limit},
			GDT: kvm.DTable{Base: gdt, Limit: limit}, TR: kvm.Segment{Base: tr, Limit: uint32(limit)}}}
	}
	got := mapWindows([]vcpuState{
		st(0xfffffe0000000000, 0xfffffe0000001000, 0xfffffe0000003000, 0xfff),
		st(0xfffffe0000000000, 0x1000, 0xfffffffffffff800, 0x7ff),     // GDT in the lower half; TSS wraps
		{sregs: kvm.Sregs{IDT: kvm.DTable{Base: 0xffffffffff000000}}}, // paging off
	})
	want := [][2]uint64{
		{0xfffffe0000000000, 0xfffffe0000002000},
		{0xfffffe0000003000, 0xfffffe0000004000},
		{0xffffffff80000000, 0xffffffffc0000000},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("windows %x, want %x", got, want)
	}
}

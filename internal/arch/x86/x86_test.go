package x86

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nitrovm/nitrovm/internal/kvm"
	"github.com/nitrovm/nitrovm/internal/memory"
)

var le = binary.LittleEndian

// fakeBzImage returns a minimal bzImage: setup header (setup_sects 0 = 4)
// then payloadBytes of payload bytes 0xAB.
func fakeBzImage(payloadBytes int) []byte {
	b := make([]byte, 5*512+payloadBytes)
	le.PutUint16(b[hdrBootFlag:], bootFlagMagic)
	b[hdrJump+1] = 0x6a // header ends at 0x26c
	le.PutUint32(b[hdrMagic:], hdrSMagic)
	le.PutUint16(b[hdrVersion:], 0x20f)
	b[hdrLoadFlags] = loadedHigh
	le.PutUint32(b[hdrInitrdAddrMax:], 0x7fffffff)
	le.PutUint32(b[hdrKernelAlignment:], 0x200000)
	le.PutUint16(b[hdrXLoadFlags:], xlfKernel64)
	le.PutUint32(b[hdrCmdlineSize:], 2047)
	le.PutUint32(b[hdrInitSize:], 0x800000)
	for i := 5 * 512; i < len(b); i++ {
		b[i] = 0xab
	}
	return b
}

func TestParseBzImage(t *testing.T) {
	good := fakeBzImage(4096)
	mut := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	tests := []struct {
		name    string
		img     []byte
		wantErr bool
	}{
		{"good", good, false},
		{"short", good[:0x100], true},
		{"no magic", mut(func(b []byte) { b[hdrMagic] = 'X' }), true},
		{"no boot flag", mut(func(b []byte) { b[hdrBootFlag] = 0 }), true},
		{"old protocol", mut(func(b []byte) { le.PutUint16(b[hdrVersion:], 0x20a) }), true},
		{"no 64-bit entry", mut(func(b []byte) { le.PutUint16(b[hdrXLoadFlags:], 0) }), true},
		{"setup covers image", good[:5*512], true},
	}
	for _, tt := range tests {
		k, err := ParseBzImage(bytes.NewReader(tt.img), int64(len(tt.img)))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: got err %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrNotBzImage) && tt.name != "short" {
				t.Errorf("%s: got %v, want ErrNotBzImage", tt.name, err)
			}
			continue
		}
		if k.PayloadOffset != 5*512 || k.PayloadBytes != 4096 {
			t.Errorf("payload: got %#x+%#x, want 0xa00+0x1000", k.PayloadOffset, k.PayloadBytes)
		}
		if len(k.Header) != 0x26c-0x1f1 {
			t.Errorf("header length: got %#x, want %#x", len(k.Header), 0x26c-0x1f1)
		}
	}
}

func testGuest(t *testing.T, size int) *memory.Guest {
	t.Helper()
	g, err := memory.New(memory.Region{GPA: 0, Data: make([]byte, size)})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestLoadKernel(t *testing.T) {
	img := fakeBzImage(8192)
	k, err := ParseBzImage(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	mem := testGuest(t, 2<<20)
	entry, err := k.Load(mem)
	if err != nil {
		t.Fatal(err)
	}
	if entry != 0x100200 {
		t.Errorf("entry: got %#x, want 0x100200", entry)
	}
	got, _ := mem.Slice(KernelAddr, 8192)
	if !bytes.Equal(got, img[5*512:]) {
		t.Errorf("kernel payload not copied to 1 MiB")
	}
	small := testGuest(t, 1<<20)
	if _, err := k.Load(small); err == nil {
		t.Errorf("load into 1 MiB of RAM: got nil error, want one")
	}
}

func TestZeroPage(t *testing.T) {
	img := fakeBzImage(4096)
	k, _ := ParseBzImage(bytes.NewReader(img), int64(len(img)))
	e820 := E820Map(512 << 20)
	p, err := ZeroPage(k, BootConfig{Cmdline: "console=ttyS0", InitrdAddr: 0x1f000000, InitrdSize: 0x12345, E820: e820, RSDPAddr: ACPIAddr})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"size", uint64(len(p)), 4096},
		{"type_of_loader", uint64(p[0x210]), 0xff},
		{"loadflags", uint64(p[0x211]), loadedHigh | canUseHeap},
		{"header magic", uint64(le.Uint32(p[0x202:])), hdrSMagic},
		{"version", uint64(le.Uint16(p[0x206:])), 0x20f},
		{"cmd_line_ptr", uint64(le.Uint32(p[0x228:])), CmdlineAddr},
		{"ramdisk_image", uint64(le.Uint32(p[0x218:])), 0x1f000000},
		{"ramdisk_size", uint64(le.Uint32(p[0x21c:])), 0x12345},
		{"acpi_rsdp_addr", le.Uint64(p[0x70:]), ACPIAddr},
		{"e820_entries", uint64(p[0x1e8]), uint64(len(e820))},
		{"e820[3].addr", le.Uint64(p[0x2d0+3*20:]), HighMemAddr},
		{"e820[3].size", le.Uint64(p[0x2d0+3*20+8:]), 511 << 20},
		{"e820[3].type", uint64(le.Uint32(p[0x2d0+3*20+16:])), E820RAM},
		{"past header untouched", uint64(p[0x26c]), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
	if _, err := ZeroPage(k, BootConfig{InitrdAddr: 0xffffff00, InitrdSize: 0x1000}); err == nil {
		t.Errorf("initrd above 4 GiB: got nil error, want one")
	}
}

func TestE820Map(t *testing.T) {
	low := []E820Entry{{0, 0x9fc00, E820RAM}, {0x9fc00, 0x400, E820Reserved}, {0xe0000, 0x20000, E820Reserved}}
	tests := []struct {
		ram    uint64
		want   []E820Entry
		layout []memory.Range
	}{
		{512 << 20, append(low[:3:3], E820Entry{1 << 20, 511 << 20, E820RAM}), []memory.Range{{GPA: 0, Size: 512 << 20}}},
		{MMIOGapAddr, append(low[:3:3], E820Entry{1 << 20, MMIOGapAddr - 1<<20, E820RAM}), []memory.Range{{GPA: 0, Size: MMIOGapAddr}}},
		{4 << 30, append(low[:3:3], E820Entry{1 << 20, MMIOGapAddr - 1<<20, E820RAM}, E820Entry{1 << 32, 4<<30 - MMIOGapAddr, E820RAM}),
			[]memory.Range{{GPA: 0, Size: MMIOGapAddr}, {GPA: 1 << 32, Size: 4<<30 - MMIOGapAddr}}},
	}
	for _, tt := range tests {
		if got := E820Map(tt.ram); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("E820Map(%#x): got %v, want %v", tt.ram, got, tt.want)
		}
		if got := RAMLayout(tt.ram); !reflect.DeepEqual(got, tt.layout) {
			t.Errorf("RAMLayout(%#x): got %v, want %v", tt.ram, got, tt.layout)
		}
		var ram uint64
		for _, e := range E820Map(tt.ram) {
			if e.Type == E820RAM {
				ram += e.Size
			}
		}
		if want := tt.ram - 0xa0000 + 0x9fc00 - 0x60000; ram != want {
			t.Errorf("E820Map(%#x) RAM total: got %#x, want %#x", tt.ram, ram, want)
		}
	}
}

func TestInitrdAddr(t *testing.T) {
	img := fakeBzImage(4096)
	k, _ := ParseBzImage(bytes.NewReader(img), int64(len(img)))
	tests := []struct {
		ram, size uint64
		want      uint64
		wantErr   bool
	}{
		{512 << 20, 0x1234, 512<<20 - 0x2000, false},
		{8 << 30, 0x1000, 0x7fffffff + 1 - 0x1000, false},
		{64 << 20, 60 << 20, 0, true},
	}
	for _, tt := range tests {
		got, err := InitrdAddr(k, tt.ram, tt.size)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("InitrdAddr(%#x, %#x): got %#x, %v, want %#x, error %v", tt.ram, tt.size, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCmdline(t *testing.T) {
	img := fakeBzImage(4096)
	k, _ := ParseBzImage(bytes.NewReader(img), int64(len(img)))
	mem := testGuest(t, 1<<20)
	if err := WriteCmdline(mem, k, "console=ttyS0 panic=30"); err != nil {
		t.Fatal(err)
	}
	got, _ := mem.Slice(CmdlineAddr, 23)
	if string(got) != "console=ttyS0 panic=30\x00" {
		t.Errorf("cmdline: got %q, want %q", got, "console=ttyS0 panic=30\x00")
	}
	if err := WriteCmdline(mem, k, strings.Repeat("x", 2048)); err == nil {
		t.Errorf("2048-byte cmdline with cmdline_size 2047: got nil error, want one")
	}
	if got := VirtioCmdline([]MMIODevice{{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 6}}); got != "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6" {
		t.Errorf("VirtioCmdline: got %q", got)
	}
}

func TestBootTables(t *testing.T) {
	mem := testGuest(t, 1<<20)
	if err := WriteBootTables(mem); err != nil {
		t.Fatal(err)
	}
	read := func(a uint64) uint64 { v, _ := mem.Uint64(a); return v }
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"PML4[0]", read(PML4Addr), PDPTAddr | 3},
		{"PML4[1]", read(PML4Addr + 8), 0},
		{"PDPT[0]", read(PDPTAddr), PDAddr | 3},
		{"PD[0]", read(PDAddr), 0x83},
		{"PD[1]", read(PDAddr + 8), 0x200000 | 0x83},
		{"PD[511]", read(PDAddr + 511*8), 511<<21 | 0x83},
		{"GDT[0]", read(GDTAddr), 0},
		{"GDT[1] code", read(GDTAddr + 8), 0x00af9b000000ffff},
		{"GDT[2] data", read(GDTAddr + 16), 0x00cf93000000ffff},
		{"GDT[3] tss", read(GDTAddr + 24), 0x008f8b000000ffff},
		{"IDT", read(IDTAddr), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}

func TestBootSregs(t *testing.T) {
	s := BootSregs(kvm.Sregs{CR0: 0x10})
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"cs.selector", uint64(s.CS.Selector), 8},
		{"cs.l", uint64(s.CS.L), 1},
		{"cs.db", uint64(s.CS.DB), 0},
		{"cs.type", uint64(s.CS.Type), 0xb},
		{"cs.limit", uint64(s.CS.Limit), 0xffffffff},
		{"ds.selector", uint64(s.DS.Selector), 0x10},
		{"ss.db", uint64(s.SS.DB), 1},
		{"ds.type", uint64(s.DS.Type), 3},
		{"tr.selector", uint64(s.TR.Selector), 0x18},
		{"tr.type", uint64(s.TR.Type), 0xb},
		{"gdt.base", s.GDT.Base, GDTAddr},
		{"gdt.limit", uint64(s.GDT.Limit), 31},
		{"cr0", s.CR0, 0x80000011},
		{"cr3", s.CR3, PML4Addr},
		{"cr4", s.CR4, 0x20},
		{"efer", s.EFER, 0x500},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
	r := BootRegs(0x100200)
	if r.RIP != 0x100200 || r.RSI != ZeroPageAddr || r.RSP != BootStackAddr || r.RFLAGS != 2 {
		t.Errorf("BootRegs: got %+v", r)
	}
}

func TestMPTable(t *testing.T) {
	for _, cpus := range []int{1, 2, 4, MaxCPUs} {
		b, err := MPTable(cpus)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MPTableMaxBytes {
			t.Errorf("%d cpus: size got %d, want <= %d", cpus, len(b), MPTableMaxBytes)
		}
		if string(b[:4]) != "_MP_" || checksum(b[:16]) != 0 {
			t.Errorf("%d cpus: bad floating pointer %x", cpus, b[:16])
		}
		if got := le.Uint32(b[4:]); got != MPTableAddr+16 {
			t.Errorf("physptr: got %#x, want %#x", got, MPTableAddr+16)
		}
		tab := b[16:]
		if string(tab[:4]) != "PCMP" || int(le.Uint16(tab[4:])) != len(tab) || checksum(tab) != 0 {
			t.Errorf("%d cpus: bad table header", cpus)
		}
		counts := map[byte]int{}
		var bsp, enabled int
		for o := 44; o < len(tab); {
			typ := tab[o]
			counts[typ]++
			switch typ {
			case mpIOAPIC:
				if tab[o+1] != IOAPICID {
					t.Errorf("%d cpus: IOAPIC ID %d, want %d", cpus, tab[o+1], IOAPICID)
				}
			case mpIntSrc:
				if tab[o+6] != IOAPICID {
					t.Errorf("%d cpus: interrupt source to IOAPIC %d, want %d", cpus, tab[o+6], IOAPICID)
				}
			case mpLIntSrc:
				// LINT0 ExtINT to the BSP only, LINT1 NMI to all.
				want := map[byte][2]byte{0: {mpIRQTypeExtINT, 0}, 1: {mpIRQTypeNMI, 0xff}}[tab[o+7]]
				if got := [2]byte{tab[o+1], tab[o+6]}; got != want {
					t.Errorf("%d cpus: LINT%d type/destination %v, want %v", cpus, tab[o+7], got, want)
				}
			}
			if typ == mpProcessor {
				if tab[o+1] != byte(counts[0]-1) {
					t.Errorf("cpu %d apic id: got %d", counts[0]-1, tab[o+1])
				}
				if tab[o+3]&cpuBootProc != 0 {
					bsp++
				}
				if tab[o+3]&cpuEnabled != 0 {
					enabled++
				}
				o += 20
			} else {
				o += 8
			}
		}
		want := map[byte]int{mpProcessor: cpus, mpBus: 1, mpIOAPIC: 1, mpIntSrc: IOAPICPins, mpLIntSrc: 2}
		if !reflect.DeepEqual(counts, want) || bsp != 1 || enabled != cpus {
			t.Errorf("%d cpus: got entries %v, bsp %d, enabled %d, want %v, 1, %d", cpus, counts, bsp, enabled, want, cpus)
		}
		if got := int(le.Uint16(tab[34:])); got != cpus+IOAPICPins+4 {
			t.Errorf("entry count: got %d, want %d", got, cpus+IOAPICPins+4)
		}
	}
	if _, err := MPTable(MaxCPUs + 1); err == nil {
		t.Errorf("MPTable(%d): got nil error, want one", MaxCPUs+1)
	}
}

// table returns the ACPI table at guest address addr within blob b (based at ACPIAddr).
func acpiTable(t *testing.T, b []byte, addr uint64) []byte {
	t.Helper()
	o := addr - ACPIAddr
	n := uint64(le.Uint32(b[o+4:]))
	tab := b[o : o+n]
	if checksum(tab) != 0 {
		t.Errorf("table %s: checksum does not sum to zero", tab[:4])
	}
	return tab
}

func TestACPITables(t *testing.T) {
	devs := []MMIODevice{{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 6}}
	b, err := ACPITables(3, devs)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:8]) != "RSD PTR " || checksum(b[:20]) != 0 || checksum(b[:36]) != 0 || b[15] != 2 {
		t.Fatalf("bad RSDP %x", b[:36])
	}
	xsdt := acpiTable(t, b, le.Uint64(b[24:]))
	if string(xsdt[:4]) != "XSDT" || len(xsdt) != 36+16 {
		t.Fatalf("bad XSDT %q", xsdt[:4])
	}
	fadt := acpiTable(t, b, le.Uint64(xsdt[36:]))
	madt := acpiTable(t, b, le.Uint64(xsdt[44:]))
	if string(fadt[:4]) != "FACP" || len(fadt) != 276 {
		t.Errorf("FADT: got %q length %d, want FACP 276", fadt[:4], len(fadt))
	}
	if le.Uint32(fadt[112:])&(1<<20) == 0 {
		t.Errorf("FADT flags %#x: HW_REDUCED_ACPI not set", le.Uint32(fadt[112:]))
	}
	if le.Uint16(fadt[109:])&bootArch8042 == 0 {
		t.Errorf("FADT IAPC_BOOT_ARCH: 8042 flag not set")
	}
	dsdt := acpiTable(t, b, le.Uint64(fadt[140:]))
	if string(dsdt[:4]) != "DSDT" || uint64(le.Uint32(fadt[40:])) != le.Uint64(fadt[140:]) {
		t.Errorf("DSDT: got %q, DSDT/X_DSDT %#x/%#x", dsdt[:4], le.Uint32(fadt[40:]), le.Uint64(fadt[140:]))
	}

	if string(madt[:4]) != "APIC" || le.Uint32(madt[36:]) != LAPICAddr {
		t.Errorf("MADT: got %q lapic %#x", madt[:4], le.Uint32(madt[36:]))
	}
	var lapics []byte
	var ioapics int
	for o := 44; o < len(madt); o += int(madt[o+1]) {
		switch madt[o] {
		case madtLAPIC:
			if le.Uint32(madt[o+4:])&1 == 0 {
				t.Errorf("MADT LAPIC %d not enabled", madt[o+3])
			}
			lapics = append(lapics, madt[o+3])
		case madtIOAPIC:
			ioapics++
			if le.Uint32(madt[o+4:]) != IOAPICAddr || madt[o+2] != IOAPICID {
				t.Errorf("MADT IOAPIC: got id %d addr %#x", madt[o+2], le.Uint32(madt[o+4:]))
			}
		}
	}
	if !bytes.Equal(lapics, []byte{0, 1, 2}) || ioapics != 1 {
		t.Errorf("MADT: got LAPIC IDs %v and %d IOAPICs, want [0 1 2] and 1", lapics, ioapics)
	}

	if got := bytes.Count(dsdt, []byte("LNRO0005\x00")); got != 2 {
		t.Errorf("DSDT LNRO0005 devices: got %d, want 2", got)
	}
	for i, d := range devs {
		mem := []byte{rdMemory32Fixed, 9, 0, 1}
		mem = le.AppendUint32(le.AppendUint32(mem, uint32(d.Addr)), 0x1000)
		irq := le.AppendUint32([]byte{rdExtIRQ, 6, 0, 3, 1}, d.IRQ)
		want := append(append(mem, irq...), rdEndTag, 0)
		if !bytes.Contains(dsdt, want) {
			t.Errorf("DSDT device %d: _CRS %x not found", i, want)
		}
		if !bytes.Contains(dsdt, []byte{amlExtOp, amlDeviceOp}) || !bytes.Contains(dsdt, []byte("VR0"+string(rune('0'+i)))) {
			t.Errorf("DSDT device VR%02X not found", i)
		}
	}
	com1 := []byte{'C', 'O', 'M', '1', amlNameOp, '_', 'H', 'I', 'D', amlDWord, 0x41, 0xd0, 0x05, 0x01}
	if !bytes.Contains(dsdt, com1) {
		t.Errorf("DSDT: COM1 with _HID PNP0501 not found")
	}
	if !bytes.Contains(dsdt, []byte{rdIO, 1, 0xf8, 0x03, 0xf8, 0x03, 1, 8, rdIRQNoFlags, 0x10, 0, rdEndTag, 0}) {
		t.Errorf("DSDT: COM1 _CRS (ports 0x3f8-0x3ff, IRQ 4) not found")
	}
	if !bytes.Contains(dsdt, []byte{'P', 'S', '2', 'K', amlNameOp, '_', 'H', 'I', 'D', amlDWord, 0x41, 0xd0, 0x03, 0x03}) {
		t.Errorf("DSDT: PS2K with _HID PNP0303 not found")
	}
	// Scope(\_SB) package length must cover exactly the rest of the table.
	o := 36
	if dsdt[o] != amlScopeOp {
		t.Fatalf("DSDT body: got %#x, want ScopeOp", dsdt[o])
	}
	if n := pkgLen(dsdt[o+1:]); n != len(dsdt)-o-1 {
		t.Errorf("Scope PkgLength: got %d, want %d", n, len(dsdt)-o-1)
	}
}

// pkgLen decodes an AML PkgLength.
func pkgLen(b []byte) int {
	extra := int(b[0] >> 6)
	if extra == 0 {
		return int(b[0] & 0x3f)
	}
	n := int(b[0] & 0xf)
	for i := 1; i <= extra; i++ {
		n |= int(b[i]) << (4 + 8*(i-1))
	}
	return n
}

func TestAMLPkg(t *testing.T) {
	for _, n := range []int{0, 1, 61, 62, 63, 100, 4093, 4094, 5000, 1 << 20} {
		p := amlPkg(make([]byte, n))
		if got := pkgLen(p); got != len(p) {
			t.Errorf("amlPkg(%d bytes): PkgLength got %d, want %d", n, got, len(p))
		}
	}
}

func TestNormalizeCPUID(t *testing.T) {
	// As KVM_GET_SUPPORTED_CPUID reports them: leaf 0xB with subleaf 0
	// only and no topology in it.
	in := []kvm.CPUIDEntry{
		{Function: 0, EAX: 0xd},
		{Function: 1, EBX: 0xff00ff07, ECX: cpuidVMXECX | 1, EDX: 0},
		{Function: 4, EAX: 0xffff_c121},
		{Function: 0xb, Index: 0, Flags: cpuidFlagIndex},
		{Function: 0x8000_0001, ECX: cpuidTopoExtECX | cpuidSVMECX},
		{Function: cpuidSVMFeatures, EAX: 1, EBX: 0x8000, EDX: 0x1ebfbcff},
		{Function: 0x8000_0008, ECX: 0xff},
		{Function: 0x8000_001e, EAX: 7, EBX: 0x100, ECX: 0x101},
	}
	out := NormalizeCPUID(in, 2, 4)
	find := func(fn, idx uint32) kvm.CPUIDEntry {
		for _, e := range out {
			if e.Function == fn && e.Index == idx {
				return e
			}
		}
		t.Fatalf("no leaf %#x.%d in %v", fn, idx, out)
		return kvm.CPUIDEntry{}
	}
	if got, want := len(out), len(in)+2; got != want {
		t.Errorf("entries: got %v, want %v", got, want)
	}
	tests := []struct {
		name      string
		got, want uint32
	}{
		{"leaf 0 untouched", find(0, 0).EAX, 0xd},
		{"leaf 1 EBX", find(1, 0).EBX, 2<<24 | 4<<16 | 8<<8 | 0x07},
		{"leaf 1 hypervisor", find(1, 0).ECX >> 31, 1},
		{"leaf 1 HTT", find(1, 0).EDX >> 28 & 1, 1},
		{"leaf 1 ECX other than hypervisor: VMX cleared, SSE3 kept", find(1, 0).ECX &^ cpuidHypervisorECX, 1},
		{"leaf 0x80000001 ECX: SVM cleared", find(0x8000_0001, 0).ECX, cpuidTopoExtECX},
		{"leaf 0x8000000a EAX", find(cpuidSVMFeatures, 0).EAX, 0},
		{"leaf 0x8000000a EBX", find(cpuidSVMFeatures, 0).EBX, 0},
		{"leaf 0x8000000a EDX", find(cpuidSVMFeatures, 0).EDX, 0},
		{"leaf 4 EAX", find(4, 0).EAX, 3<<26 | 0x0121},
		{"leaf 0xb.0 flags", find(0xb, 0).Flags, cpuidFlagIndex},
		{"leaf 0xb.0 EAX", find(0xb, 0).EAX, 0},
		{"leaf 0xb.0 EBX", find(0xb, 0).EBX, 1},
		{"leaf 0xb.0 ECX", find(0xb, 0).ECX, 0x100},
		{"leaf 0xb.0 x2apic id", find(0xb, 0).EDX, 2},
		{"leaf 0xb.1 flags", find(0xb, 1).Flags, cpuidFlagIndex},
		{"leaf 0xb.1 EAX", find(0xb, 1).EAX, 2},
		{"leaf 0xb.1 EBX", find(0xb, 1).EBX, 4},
		{"leaf 0xb.1 ECX", find(0xb, 1).ECX, 0x201},
		{"leaf 0xb.1 x2apic id", find(0xb, 1).EDX, 2},
		{"leaf 0xb.2 EBX", find(0xb, 2).EBX, 0},
		{"leaf 0xb.2 ECX", find(0xb, 2).ECX, 2},
		{"leaf 0x80000008 ECX", find(0x8000_0008, 0).ECX, 2<<12 | 3},
		{"leaf 0x8000001e EAX", find(0x8000_001e, 0).EAX, 2},
		{"leaf 0x8000001e EBX", find(0x8000_001e, 0).EBX, 2},
		{"leaf 0x8000001e ECX", find(0x8000_001e, 0).ECX, 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}

func TestNormalizeCPUIDTopology(t *testing.T) {
	// Leaf 0xB core level and 0x80000008 ECX for each vCPU count: one
	// package of count cores.
	tests := []struct {
		count              int
		coreShift, leaf8EC uint32
	}{
		{1, 0, 0},
		{2, 1, 1<<12 | 1},
		{3, 2, 2<<12 | 2},
		{4, 2, 2<<12 | 3},
		{5, 3, 3<<12 | 4},
		{32, 5, 5<<12 | 31},
	}
	for _, tt := range tests {
		in := []kvm.CPUIDEntry{{Function: 0xb}, {Function: 0xb, Index: 1}, {Function: 0x8000_0008}}
		out := NormalizeCPUID(in, tt.count-1, tt.count)
		if len(out) != 4 {
			t.Fatalf("count %d: entries: got %v, want 4", tt.count, len(out))
		}
		if got, want := [2]uint32{out[1].EAX, out[1].EBX}, [2]uint32{tt.coreShift, uint32(tt.count)}; got != want {
			t.Errorf("count %d: leaf 0xb.1 EAX, EBX: got %v, want %v", tt.count, got, want)
		}
		if got := out[3].ECX; got != tt.leaf8EC {
			t.Errorf("count %d: leaf 0x80000008 ECX: got %#x, want %#x", tt.count, got, tt.leaf8EC)
		}
		if got, want := out[3].Function, uint32(0x8000_0008); got != want {
			t.Errorf("count %d: last leaf: got %#x, want %#x", tt.count, got, want)
		}
	}
}

func TestNormalizeCPUIDNoTopoExt(t *testing.T) {
	// Without TopologyExtensions leaf 0x8000001E is left as KVM reports it.
	in := []kvm.CPUIDEntry{{Function: 0x8000_001e, EAX: 7, EBX: 0x100}}
	out := NormalizeCPUID(in, 1, 2)
	if out[0] != in[0] {
		t.Errorf("leaf 0x8000001e: got %v, want %v", out[0], in[0])
	}
}

func TestWithTSCDeadline(t *testing.T) {
	in := []kvm.CPUIDEntry{{Function: 0, EAX: 0xd}, {Function: 1, ECX: 0x8000_0001}, {Function: 7}}
	out := WithTSCDeadline(in)
	if out[1].ECX != 0x8100_0001 {
		t.Errorf("leaf 1 ECX: got %#x, want 0x81000001", out[1].ECX)
	}
	if out[0] != in[0] || out[2] != in[2] {
		t.Errorf("other leaves changed: got %v, want %v", out, in)
	}
	if in[1].ECX != 0x8000_0001 {
		t.Errorf("input modified: leaf 1 ECX %#x", in[1].ECX)
	}
}

func TestSetLINT(t *testing.T) {
	var l kvm.LAPICState
	le.PutUint32(l.Regs[apicLVT0:], 0x10700)
	SetLINT(&l)
	if got := le.Uint32(l.Regs[apicLVT0:]); got != 0x10700 {
		t.Errorf("LVT0: got %#x, want 0x10700", got)
	}
	if got := le.Uint32(l.Regs[apicLVT1:]); got != 0x400 {
		t.Errorf("LVT1: got %#x, want 0x400", got)
	}
}

// brandOf decodes the brand string leaves of cpuid as a guest reads them.
func brandOf(cpuid []kvm.CPUIDEntry) string {
	var b []byte
	for fn := uint32(0x8000_0002); fn <= 0x8000_0004; fn++ {
		for _, e := range cpuid {
			if e.Function == fn {
				b = le.AppendUint32(b, e.EAX)
				b = le.AppendUint32(b, e.EBX)
				b = le.AppendUint32(b, e.ECX)
				b = le.AppendUint32(b, e.EDX)
			}
		}
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func TestWithBrandString(t *testing.T) {
	long := strings.Repeat("x", 60)
	for _, tc := range []struct {
		name   string
		in     []kvm.CPUIDEntry
		brand  string
		want   string
		extMax uint32
		n      int
	}{
		{"added", []kvm.CPUIDEntry{{Function: 0}, {Function: 0x8000_0000, EAX: 0x8000_0001}, {Function: 0x8000_0001}},
			"AMD EPYC 7R13 Processor", "AMD EPYC 7R13 Processor", 0x8000_0004, 6},
		{"replaced", []kvm.CPUIDEntry{{Function: 0x8000_0000, EAX: 0x8000_0008}, {Function: 0x8000_0002, EAX: 1}, {Function: 0x8000_0003}, {Function: 0x8000_0004}, {Function: 0x8000_0008}},
			"Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", 0x8000_0008, 5},
		{"brand leaves before the maximum", []kvm.CPUIDEntry{{Function: 0x8000_0003}, {Function: 0x8000_0000, EAX: 0x8000_0004}},
			"cpu", "cpu", 0x8000_0004, 4},
		{"truncated to 47 bytes", []kvm.CPUIDEntry{{Function: 0x8000_0000, EAX: 0x8000_0004}}, long, long[:47], 0x8000_0004, 4},
		{"no brand", []kvm.CPUIDEntry{{Function: 0x8000_0000, EAX: 0x8000_0001}}, "", "", 0x8000_0001, 1},
		{"no extended leaves", []kvm.CPUIDEntry{{Function: 0}, {Function: 1}}, "cpu", "", 0, 2},
	} {
		out := WithBrandString(tc.in, tc.brand)
		var ext uint32
		for _, e := range out {
			if e.Function == 0x8000_0000 {
				ext = e.EAX
			}
		}
		if got := brandOf(out); got != tc.want || ext != tc.extMax || len(out) != tc.n {
			t.Errorf("%s: brand %q, max leaf %#x, %d entries; want %q, %#x, %d", tc.name, got, ext, len(out), tc.want, tc.extMax, tc.n)
		}
	}
}

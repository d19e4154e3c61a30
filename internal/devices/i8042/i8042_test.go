package i8042

import "testing"

func TestCommands(t *testing.T) {
	type op struct {
		write  bool
		offset uint64
		val    byte // written, or expected when read
	}
	tests := []struct {
		name      string
		ops       []op
		wantReset int
	}{
		{"status idle", []op{{false, CommandOffset, strSysFlg | strKeylock}}, 0},
		{"self test", []op{{true, CommandOffset, cmdSelfTest}, {false, CommandOffset, strSysFlg | strKeylock | strCmdDat | strOBF}, {false, DataOffset, selfTestOK}, {false, CommandOffset, strSysFlg | strKeylock | strCmdDat}}, 0},
		{"ctr write/read", []op{{true, CommandOffset, cmdCTRWrite}, {true, DataOffset, 0x61}, {true, CommandOffset, cmdCTRRead}, {false, DataOffset, 0x61}}, 0},
		{"kbd test", []op{{true, CommandOffset, cmdKbdTest}, {false, DataOffset, 0}}, 0},
		{"keyboard ack", []op{{true, DataOffset, 0xff}, {false, DataOffset, kbdAck}}, 0},
		{"reset 0xfe", []op{{true, CommandOffset, cmdPulseReset}}, 1},
		{"reset via output port", []op{{true, CommandOffset, cmdOutPortWrt}, {true, DataOffset, 0xfe}}, 1},
		{"output port keeps cpu", []op{{true, CommandOffset, cmdOutPortWrt}, {true, DataOffset, 0x03}}, 0},
		{"pulse 0xf0", []op{{true, CommandOffset, 0xf0}}, 1},
		{"pulse 0xff no reset", []op{{true, CommandOffset, 0xff}}, 0},
	}
	for _, tt := range tests {
		resets := 0
		d := New(func() { resets++ })
		for i, o := range tt.ops {
			if o.write {
				d.Write(o.offset, []byte{o.val})
				continue
			}
			b := []byte{0xee}
			d.Read(o.offset, b)
			if b[0] != o.val {
				t.Errorf("%s: op %d read %#x: got %#x, want %#x", tt.name, i, o.offset, b[0], o.val)
			}
		}
		if resets != tt.wantReset {
			t.Errorf("%s: resets got %d, want %d", tt.name, resets, tt.wantReset)
		}
	}
}

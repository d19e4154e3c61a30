package idleconn

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestIdleDeadline checks a silent peer fails a read after Idle, while
// data that keeps coming is read whatever the total time.
func TestIdleDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := Conn{Conn: a, Idle: 50 * time.Millisecond}
	go func() {
		for i := 0; i < 4; i++ {
			time.Sleep(20 * time.Millisecond)
			b.Write([]byte{byte(i)})
		}
	}()
	buf := make([]byte, 1)
	for i := 0; i < 4; i++ {
		if _, err := c.Read(buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("read %d: %v %v", i, buf, err)
		}
	}
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent peer: got %v, want a deadline error", err)
	}
	if _, err := c.Write(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer not reading: got %v, want a deadline error", err)
	}
}

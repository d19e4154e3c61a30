package main

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestDialRetry checks that a dial which succeeds after refusals returns
// the connection and no error, and one that never succeeds returns the
// last refusal.
func TestDialRetry(t *testing.T) {
	refused := errors.New("connection reset by peer")
	tests := []struct {
		name      string
		failures  int // dials refused before one succeeds; -1: never
		wantConn  bool
		wantError bool
	}{
		{"first dial", 0, true, false},
		{"after two refusals", 2, true, false},
		{"never", -1, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			d := func(uint32) (net.Conn, error) {
				calls++
				if tt.failures < 0 || calls <= tt.failures {
					return nil, refused
				}
				a, b := net.Pipe()
				b.Close()
				return a, nil
			}
			c, err := dialRetry(d, sinkPort, 500*time.Millisecond)
			if (c != nil) != tt.wantConn || (err != nil) != tt.wantError {
				t.Fatalf("dialRetry = %v, %v; want connection %v, error %v", c, err, tt.wantConn, tt.wantError)
			}
			if c != nil {
				c.Close()
			}
			if tt.wantError && !errors.Is(err, refused) {
				t.Errorf("error %v does not wrap the last refusal", err)
			}
		})
	}
}

// Package idleconn bounds how long a connection may stay idle, not how
// long a whole transfer may take.
package idleconn

import (
	"net"
	"time"
)

// Conn gives each Read and Write its own deadline, Idle from the call: a
// transfer that stops moving fails, a slow one does not.
type Conn struct {
	net.Conn
	Idle time.Duration
}

// Read reads with a deadline Idle from now.
func (c Conn) Read(p []byte) (int, error) {
	if err := c.SetReadDeadline(time.Now().Add(c.Idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write writes with a deadline Idle from now.
func (c Conn) Write(p []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.Idle)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

package enclave

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// The control protocol between nitrovm commands and a supervisor: the
// client sends one JSON request line on <enclave dir>/ctl.sock and reads one
// JSON response line. After a successful "console" response the connection
// carries the raw console stream until the enclave exits.
const (
	opDescribe  = "describe"  // reply with the current record
	opTerminate = "terminate" // stop the VM, reply with the final record
	opConsole   = "console"   // reply, then stream the console
)

// controlDialTimeout bounds connecting to a supervisor.
const controlDialTimeout = 5 * time.Second

// ctlRequest is a control request.
type ctlRequest struct {
	Op string `json:"op"`
}

// ctlResponse is a control reply.
type ctlResponse struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Kind   Kind    `json:"kind,omitempty"`
	Record *Record `json:"record,omitempty"`
}

// controlCall sends op to the supervisor owning dir and returns its reply
// and the open connection (positioned after the reply line), which the
// caller closes.
func controlCall(ctx context.Context, dir, op string) (*ctlResponse, net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: controlDialTimeout}
	conn, err := d.DialContext(ctx, "unix", filepath.Join(dir, controlSocket))
	if err != nil {
		return nil, nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(ctlRequest{Op: op}); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("send %s request: %w", op, err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, nil, nil, fmt.Errorf("read %s reply: %w", op, err)
	}
	var resp ctlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("decode %s reply: %w", op, err)
	}
	return &resp, conn, br, nil
}

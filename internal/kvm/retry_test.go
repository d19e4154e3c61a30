package kvm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRetryEINTR checks that only EINTR starts a call again.
func TestRetryEINTR(t *testing.T) {
	for _, c := range []struct {
		name    string
		errs    []error
		wantErr error
		calls   int
	}{
		{"ok at once", []error{nil}, nil, 1},
		{"EINTR twice then ok", []error{unix.EINTR, unix.EINTR, nil}, nil, 3},
		{"other error", []error{unix.ENOMEM}, unix.ENOMEM, 1},
		{"EINTR then other error", []error{unix.EINTR, unix.EBADF}, unix.EBADF, 2},
	} {
		n := 0
		r, err := retryEINTR(func() (uintptr, error) {
			err := c.errs[n]
			n++
			if err != nil {
				return 0, err
			}
			return 7, nil
		})
		if !errors.Is(err, c.wantErr) || n != c.calls { // errors.Is(nil, e) holds only for e == nil.
			t.Errorf("%s: err %v after %d calls, want %v after %d", c.name, err, n, c.wantErr, c.calls)
		}
		if err == nil && r != 7 {
			t.Errorf("%s: result %d, want 7", c.name, r)
		}
	}
}

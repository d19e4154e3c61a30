package jail

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capsetZero sets every thread's effective, permitted and inheritable
// capability sets to empty (capset(2) with version 3's two data words).
func capsetZero() syscall.Errno {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	_, _, e := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	return e
}

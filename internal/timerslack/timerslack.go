// Package timerslack sets the Linux timer slack of the VMM's threads: how
// late the kernel may end their timed sleeps (nanosleep, futex and epoll
// timeouts) so that it can serve several with one timer interrupt
// (prctl(2), PR_SET_TIMERSLACK; the default is 50 µs).
//
// A vCPU thread spends its guest's halts inside one KVM_RUN system call.
// Each time such a call lasts 10 ms, the Go runtime's sysmon thread takes
// the thread's P back and then polls every 20 µs, 50 times, before it slows
// down again (sysmon and retake in runtime/proc.go); when the call returns
// and finds its P gone, it wakes sysmon, which starts over. In a guest
// that waits on its devices, that is thousands of timer interrupts and
// context switches a second: in a nested vsock benchmark, L1 took 2.7
// times as many timer interrupts for nitrovm's transfers as for QEMU's
// (docs/benchmarks.md, "Timer slack"). With a slack of a few milliseconds
// those polls come a few milliseconds apart. Nothing in the VMM needs a
// finer timer: the guest's own timers are KVM's, which take no slack, and
// the VMM's are 20 ms or more.
package timerslack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// VMM is the timer slack nitrovm gives the threads of a process that runs
// a VM: a tenth of the VMM's shortest timer.
const VMM = 2 * time.Millisecond

// SetThread sets the calling thread's timer slack to d and returns a
// function that puts back the value it had. Threads the calling thread
// creates from then on, and a process it forks (across execve too),
// inherit the slack it has at that moment. The caller must keep its
// goroutine on the thread (runtime.LockOSThread) until it calls restore.
func SetThread(d time.Duration) (restore func(), err error) {
	prev, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("timer slack: prctl(PR_GET_TIMERSLACK): %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
		return nil, fmt.Errorf("timer slack: prctl(PR_SET_TIMERSLACK, %d): %w", d.Nanoseconds(), err)
	}
	return func() { unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(prev), 0, 0, 0) }, nil
}

// SetProcess sets the timer slack of every thread of the calling process
// to d through /proc/self/task/TID/timerslack_ns, for a process whose
// runtime threads already run (Go starts sysmon before main). Setting
// another thread's slack needs CAP_SYS_NICE: without it only the calling
// thread is changed and the error says so.
func SetProcess(d time.Duration) error {
	return setThreads("/proc/self/task", d)
}

// setThreads writes d to the timerslack_ns file of every thread directory
// under dir.
func setThreads(dir string, d time.Duration) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	val := []byte(strconv.FormatInt(d.Nanoseconds(), 10))
	var first error
	for _, e := range ents {
		err := os.WriteFile(filepath.Join(dir, e.Name(), "timerslack_ns"), val, 0)
		if err != nil && !os.IsNotExist(err) && first == nil { // a thread may end meanwhile
			first = fmt.Errorf("timer slack of thread %s: %w (another thread's needs CAP_SYS_NICE)", e.Name(), err)
		}
	}
	return first
}

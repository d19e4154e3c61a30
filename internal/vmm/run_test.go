package vmm

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReserveProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(base) })

	// One VM: its vCPUs get Ps of their own, given back when it ends.
	restore := reserveProcs(2)
	if got := runtime.GOMAXPROCS(0); got != base+2 {
		t.Fatalf("GOMAXPROCS with a 2-vCPU VM = %d, want %d", got, base+2)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS after the VM = %d, want %d", got, base)
	}

	// Two VMs at once, the first ending first: the second keeps its Ps
	// and the first's restore does not take them.
	endA := reserveProcs(1)
	endB := reserveProcs(3)
	if got := runtime.GOMAXPROCS(0); got != base+4 {
		t.Fatalf("GOMAXPROCS with 1 + 3 vCPUs = %d, want %d", got, base+4)
	}
	endA()
	if got := runtime.GOMAXPROCS(0); got != base+4 {
		t.Fatalf("GOMAXPROCS after the first VM ended = %d, want %d (the second still runs)", got, base+4)
	}
	// The second restores what it found: the first's Ps stay reserved
	// (a process's overlapping VMs can leave GOMAXPROCS raised, never
	// lowered below what a running VM reserved).
	endB()
	if got := runtime.GOMAXPROCS(0); got != base+1 {
		t.Fatalf("GOMAXPROCS after both = %d, want %d", got, base+1)
	}
}

// BenchmarkDeviceWake measures what reserveProcs is for: how long a
// device goroutine blocked on an eventfd in the runtime's poller (as the
// ioeventfd forwarders are) takes to run after a vCPU thread signalled it,
// while as many locked vCPU threads as there are CPUs re-enter short
// blocking system calls back to back (a 50 µs nanosleep standing in for a
// KVM_RUN that exits often). vCPU 0 signals, as KVM does for a guest's
// queue notify, and the goroutine answers on a channel vCPU 0 polls.
func BenchmarkDeviceWake(b *testing.B) {
	for _, reserve := range []bool{false, true} {
		name := "shared-Ps"
		if reserve {
			name = "reserved-Ps"
		}
		b.Run(name, func(b *testing.B) {
			const vcpus = 2
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(vcpus))
			if reserve {
				defer reserveProcs(vcpus)()
			}
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				b.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), "eventfd")
			defer f.Close()
			var answered atomic.Int64
			go func() {
				var buf [8]byte
				for {
					if _, err := f.Read(buf[:]); err != nil {
						return
					}
					answered.Add(1)
				}
			}()
			stop := make(chan struct{})
			done := make(chan time.Duration)
			for i := range vcpus {
				go func() {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					ts := unix.NsecToTimespec(50_000)
					one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
					var total time.Duration
					for n := int64(0); ; {
						select {
						case <-stop:
							if i == 0 {
								done <- total
							}
							return
						default:
						}
						if i == 0 && n < int64(b.N) && answered.Load() == n {
							t0 := time.Now()
							_, _ = unix.Write(fd, one)
							for answered.Load() == n {
								_ = unix.Nanosleep(&ts, nil)
							}
							total += time.Since(t0)
							n++
							if n == int64(b.N) {
								close(stop)
							}
							continue
						}
						_ = unix.Nanosleep(&ts, nil)
					}
				}()
			}
			b.ResetTimer()
			total := <-done
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/wake")
		})
	}
}

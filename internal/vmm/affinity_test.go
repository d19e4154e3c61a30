package vmm

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// processCPUs returns the calling thread's affinity and its lowest CPU.
func processCPUs(t *testing.T) (unix.CPUSet, int) {
	t.Helper()
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	for c := 0; c < len(allowed)*64; c++ {
		if allowed.IsSet(c) {
			return allowed, c
		}
	}
	t.Fatal("empty affinity")
	return allowed, -1
}

func TestVCPUAffinity(t *testing.T) {
	allowed, first := processCPUs(t)
	last := len(allowed)*64 - 1
	if allowed.IsSet(last) {
		t.Skipf("this process may run on CPU %d", last)
	}
	for _, tc := range []struct {
		name    string
		cpus    []int
		wantErr string
	}{
		{"one allowed CPU", []int{first}, ""},
		{"allowed and not", []int{first, last}, ""},
		{"negative", []int{-1}, "vCPU CPU -1 out of range"},
		{"too large", []int{last + 1}, "out of range"},
		{"none allowed", []int{last}, "none of them is among the CPUs this process may run on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := vcpuAffinity(tc.cpus)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("vcpuAffinity(%v) = %v, want an error containing %q", tc.cpus, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.cpus {
				if !set.IsSet(c) {
					t.Errorf("CPU %d missing from the set", c)
				}
			}
		})
	}
}

// TestBuildRefusesVCPUCPUs checks that Build refuses a vCPU CPU list
// before it reads the kernel (here not a bzImage) or touches KVM.
func TestBuildRefusesVCPUCPUs(t *testing.T) {
	cfg := Config{Kernel: strings.NewReader("x"), KernelSize: 1, MemoryMiB: MinMemoryMiB, CPUs: 1, VCPUCPUs: []int{-3}}
	if _, err := Build(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("Build = %v, want out of range", err)
	}
}

func TestPinThread(t *testing.T) {
	allowed, first := processCPUs(t)
	var one unix.CPUSet
	one.Set(first)
	done := make(chan error, 1)
	var got unix.CPUSet
	go func() {
		runtime.LockOSThread() // not unlocked: the thread's affinity dies with it
		if err := pinThread(&one); err != nil {
			done <- err
			return
		}
		done <- unix.SchedGetaffinity(0, &got)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != one {
		t.Errorf("thread affinity %s, want %s", CPUList(got), CPUList(one))
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after != allowed {
		t.Errorf("process affinity changed to %s from %s", CPUList(after), CPUList(allowed))
	}
}

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		want string
	}{
		{nil, "none"},
		{[]int{0}, "0"},
		{[]int{0, 1, 2}, "0-2"},
		{[]int{1, 2, 5, 7, 8, 1023}, "1-2,5,7-8,1023"},
	} {
		var set unix.CPUSet
		for _, c := range tc.cpus {
			set.Set(c)
		}
		if got := CPUList(set); got != tc.want {
			t.Errorf("CPUList(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeQMP serves one QMP session on path: greeting, capabilities, an event,
// query-cpus-fast listing tid as vCPU 0, and cont (or the error given for
// it). It returns the commands it got.
func fakeQMP(t *testing.T, path string, tid int, contErr string) <-chan []string {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []string, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		enc, dec := json.NewEncoder(c), json.NewDecoder(bufio.NewReader(c))
		enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}}})
		var cmds []string
		for {
			var req struct {
				Execute string `json:"execute"`
			}
			if dec.Decode(&req) != nil {
				break
			}
			cmds = append(cmds, req.Execute)
			enc.Encode(map[string]any{"event": "SOMETHING"})
			switch {
			case req.Execute == "query-cpus-fast":
				enc.Encode(map[string]any{"return": []map[string]any{{"cpu-index": 0, "thread-id": tid}}})
			case req.Execute == "cont" && contErr != "":
				enc.Encode(map[string]any{"error": map[string]string{"class": "GenericError", "desc": contErr}})
			default:
				enc.Encode(map[string]any{"return": map[string]any{}})
			}
		}
		got <- cmds
	}()
	return got
}

// lockedThread starts a thread of this process that plays a QEMU vCPU
// thread and returns its ID, the CPU it first may run on, and a function
// that ends it and returns its affinity then.
func lockedThread(t *testing.T) (tid, cpu int, end func() unix.CPUSet) {
	t.Helper()
	tidc, read, done := make(chan int), make(chan unix.CPUSet), make(chan struct{})
	go func() {
		runtime.LockOSThread() // not unlocked: its affinity dies with it
		var set unix.CPUSet
		unix.SchedGetaffinity(0, &set)
		first := -1
		for c := 0; c < len(set)*64 && first < 0; c++ {
			if set.IsSet(c) {
				first = c
			}
		}
		tidc <- unix.Gettid()
		tidc <- first
		<-done
		unix.SchedGetaffinity(0, &set)
		read <- set
	}()
	tid, cpu = <-tidc, <-tidc
	return tid, cpu, func() unix.CPUSet { close(done); return <-read }
}

func TestQEMUPin(t *testing.T) {
	tid, cpu, end := lockedThread(t)
	sock := filepath.Join(t.TempDir(), "qmp")
	got := fakeQMP(t, sock, tid, "")
	err := runQEMUPin([]string{"--qmp", sock, "--cpus", strconv.Itoa(cpu)})
	set := end()
	if err != nil {
		t.Fatal(err)
	}
	if set.Count() != 1 || !set.IsSet(cpu) {
		t.Errorf("vCPU thread affinity %v, want CPU %d only", set, cpu)
	}
	if cmds := <-got; strings.Join(cmds, " ") != "qmp_capabilities query-cpus-fast cont" {
		t.Errorf("QMP commands %q", cmds)
	}
}

func TestQEMUPinErrors(t *testing.T) {
	dir := t.TempDir()
	tid, cpu, end := lockedThread(t)
	defer end()
	for _, tc := range []struct {
		name string
		args []string
		qmp  string // a fake QMP whose cont fails with this, when set
		want string
	}{
		{"no flags", nil, "", "--qmp and --cpus are required"},
		{"bad list", []string{"--qmp", "x", "--cpus", "1-x"}, "", "--cpus: invalid CPU list interval"},
		{"no socket", []string{"--qmp", filepath.Join(dir, "none"), "--cpus", "0", "--wait", "50ms"}, "", "no such file"},
		{"cont refused", []string{"--qmp", filepath.Join(dir, "q"), "--cpus", strconv.Itoa(cpu)}, "not paused", "cont: GenericError: not paused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.qmp != "" {
				fakeQMP(t, filepath.Join(dir, "q"), tid, tc.qmp)
			}
			err := runQEMUPin(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runQEMUPin(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nitrovm/nitrovm/internal/enclave"
)

// runQEMUPin is "hostbench qemu-pin --qmp PATH --cpus LIST": it connects to
// the QMP socket of a QEMU started with -S (vCPUs created, not yet run),
// confines each vCPU thread to LIST (QMP query-cpus-fast gives their
// thread IDs), then lets the guest run (cont). QEMU has no option for its
// vCPU threads' affinity; this gives its vCPUs the placement nitrovm's get
// from NITROVM_VCPU_CPUS, with every other thread free, so that neither VMM
// runs a guest on L1's CPU 0 (docs/nested.md).
func runQEMUPin(args []string) error {
	fs := flag.NewFlagSet("qemu-pin", flag.ContinueOnError)
	path := fs.String("qmp", "", "QEMU's QMP Unix socket")
	list := fs.String("cpus", "", "CPUs for the vCPU threads, e.g. 1-2")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the socket")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *list == "" {
		return errors.New("qemu-pin: --qmp and --cpus are required")
	}
	cpus, err := enclave.ParseCPUPool(*list)
	if err != nil {
		return fmt.Errorf("qemu-pin: --cpus: %w", err)
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(int(c))
	}
	var c net.Conn
	for deadline := time.Now().Add(*wait); ; time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("unix", *path); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("qemu-pin: %w", err)
	}
	defer c.Close()
	q := qmp{enc: json.NewEncoder(c), dec: json.NewDecoder(bufio.NewReader(c))}
	var greeting map[string]any
	if err := q.dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qemu-pin: QMP greeting: %w", err)
	}
	if err := q.call("qmp_capabilities", nil); err != nil {
		return err
	}
	var vcpus []struct {
		Index    int `json:"cpu-index"`
		ThreadID int `json:"thread-id"`
	}
	if err := q.call("query-cpus-fast", &vcpus); err != nil {
		return err
	}
	if len(vcpus) == 0 {
		return errors.New("qemu-pin: query-cpus-fast listed no vCPUs")
	}
	for _, v := range vcpus {
		if err := unix.SchedSetaffinity(v.ThreadID, &set); err != nil {
			return fmt.Errorf("qemu-pin: vCPU %d (thread %d): sched_setaffinity: %w", v.Index, v.ThreadID, err)
		}
	}
	if err := q.call("cont", nil); err != nil {
		return err
	}
	fmt.Printf("qemu-pin: %d vCPU threads on CPUs %s, guest running\n", len(vcpus), *list)
	return nil
}

// qmp is a QMP connection: one command at a time, events skipped.
type qmp struct {
	enc *json.Encoder
	dec *json.Decoder
}

// call runs command and decodes its "return" value into ret (nil ignores
// it).
func (q qmp) call(command string, ret any) error {
	if err := q.enc.Encode(map[string]string{"execute": command}); err != nil {
		return fmt.Errorf("qemu-pin: %s: %w", command, err)
	}
	for {
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.dec.Decode(&msg); err != nil {
			return fmt.Errorf("qemu-pin: %s: %w", command, err)
		}
		switch {
		case msg.Event != "":
			continue
		case msg.Error != nil:
			return fmt.Errorf("qemu-pin: %s: %s: %s", command, msg.Error.Class, msg.Error.Desc)
		case ret != nil:
			return json.Unmarshal(msg.Return, ret)
		default:
			return nil
		}
	}
}

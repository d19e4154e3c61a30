package enclave

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// Supervisor timing.
const (
	// stopTimeout bounds how long a stopping VM may take to exit.
	stopTimeout = 30 * time.Second
	// requestReadTimeout bounds how long a control client may take to send
	// its request line.
	requestReadTimeout = 10 * time.Second
	// consoleWriteTimeout bounds one write to a console client.
	consoleWriteTimeout = 10 * time.Second
)

// SuperviseOptions configures Supervise.
type SuperviseOptions struct {
	Launcher Launcher
	Logger   *slog.Logger
	// Status receives one JSON line once the heartbeat arrived or the
	// start failed, and is then closed if it is an io.Closer. May be nil.
	Status io.Writer
	// Namespaces is NamespacesEnv's value: the namespaces the spawner
	// gave the supervisor ("" means none, reason unknown).
	Namespaces string
	// Probe makes the supervisor call a syscall outside the seccomp
	// allowlist once contained (ProbeEnv).
	Probe bool
}

// startStatus is the line a supervisor sends to the process that started
// it.
type startStatus struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Kind  Kind   `json:"kind,omitempty"`
}

// supervisor owns one enclave: its VM, control socket and directory.
type supervisor struct {
	store  Store
	dir    string
	logger *slog.Logger
	status io.Writer

	mu  sync.Mutex
	rec *Record

	hub      *consoleHub // nil in production mode
	termReq  chan chan *Record
	finished chan struct{} // closed when the enclave is gone
	handlers sync.WaitGroup

	namespaces string // SuperviseOptions.Namespaces
	probe      bool   // SuperviseOptions.Probe
	// lockFile and eventsFile are the state directory's lock and events
	// log, opened before the supervisor confined itself; nil before.
	lockFile, eventsFile *os.File
}

// Supervise runs the enclave whose reservation is in dir until it exits or
// is terminated, then removes dir. It is the body of the detached
// "nitrovm supervise" process.
//
// Postconditions: dir is removed, the status line was sent, and every
// control client got its reply.
func Supervise(ctx context.Context, dir string, o SuperviseOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir = filepath.Clean(dir)
	rec, err := readRecord(dir)
	if err != nil {
		err = wrapErr(KindFileOperation, err, "read enclave record")
		sendStatus(o.Status, err)
		return err
	}
	if rec.State != StateStarting || rec.PID != 0 {
		err := newErr(KindInvalidArgument, "enclave %s is already supervised (PID %d)", rec.ID, rec.PID)
		sendStatus(o.Status, err)
		return err
	}
	s := &supervisor{
		store:    Store{Dir: filepath.Dir(dir)},
		dir:      dir,
		logger:   o.Logger.With("enclave", rec.ID),
		status:   o.Status,
		rec:      rec,
		termReq:  make(chan chan *Record),
		finished: make(chan struct{}),

		namespaces: o.Namespaces,
		probe:      o.Probe,
	}
	if s.namespaces == "" {
		s.namespaces = "none: started without " + NamespacesEnv
	}
	return s.run(ctx, o.Launcher)
}

func (s *supervisor) run(ctx context.Context, launcher Launcher) (err error) {
	usr1 := &signalDumper{}
	defer dumpOnSignal(usr1, s.logger)()
	s.rec.PID, s.rec.PIDStart = selfStart()
	if err := s.save(); err != nil {
		return s.failStart(nil, err)
	}

	ctlPath := filepath.Join(s.dir, controlSocket)
	os.Remove(ctlPath)
	ln, err := net.Listen("unix", ctlPath)
	if err != nil {
		return s.failStart(nil, wrapErr(KindSocket, err, "listen on control socket"))
	}
	go s.serve(ln)
	defer func() {
		ln.Close()
		close(s.finished)
		if s.hub != nil {
			s.hub.close()
		}
		s.handlers.Wait()
	}()

	var console io.Writer = io.Discard
	if s.rec.Debug {
		f, err := os.OpenFile(filepath.Join(s.dir, consoleLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return s.failStart(nil, wrapErr(KindFileOperation, err, "open console log"))
		}
		defer f.Close()
		s.hub = newConsoleHub(f)
		console = s.hub
	}

	// The VM outlives ctx's cancellation long enough to be stopped
	// cleanly; it ends when run returns at the latest.
	vmCtx, cancelVM := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelVM()
	rec := s.snapshot()
	timeout := rec.HeartbeatTimeout
	if timeout <= 0 {
		timeout = DefaultHeartbeatTimeout
	}
	launched := time.Now()
	inst, err := launcher.Launch(vmCtx, Spec{
		ID: rec.ID, EIFPath: rec.EIFPath, MemoryMiB: rec.MemoryMiB, CPUIDs: rec.CPUIDs,
		CID: rec.CID, Debug: rec.Debug, Console: console,
		VsockUDS: rec.VsockUDS, Forwards: rec.Forwards, Publishes: rec.Publishes,
		AFVsock: rec.AFVsock, HeartbeatTimeout: timeout, KMS: rec.KMS,
		ParentID: rec.ParentID, ParentRoleARN: rec.ParentRoleARN,
		Logger: s.logger, Contain: s.contain,
	})
	if err != nil {
		if KindOf(err) == KindUnspecified {
			err = wrapErr(KindBoot, err, "launch enclave")
		}
		return s.failStart(nil, err)
	}
	s.mu.Lock()
	s.rec.Measurements = inst.Measurements()
	s.mu.Unlock()
	if err := s.save(); err != nil {
		return s.failStart(inst, err)
	}

	if d, ok := inst.(dumper); ok {
		usr1.set(d)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-inst.Heartbeat():
	case <-inst.Done():
		detail := inst.Result()
		if detail == "" {
			detail = "the enclave exited"
		}
		return s.failStart(inst, newErr(KindBoot, "Waiting on enclave to boot failed: the enclave exited before sending its heartbeat (%s)", detail))
	case <-timer.C:
		if d, ok := inst.(dumper); ok {
			d.Dump(fmt.Sprintf("no heartbeat within %s", timeout))
		}
		return s.failStart(inst, newErr(KindBoot, "Waiting on enclave to boot failed: no heartbeat within %s", timeout))
	case <-ctx.Done():
		return s.failStart(inst, newErr(KindBoot, "Waiting on enclave to boot failed: supervisor interrupted"))
	case reply := <-s.termReq:
		s.stop(inst)
		s.finish("terminated", "")
		reply <- s.snapshot()
		sendStatus(s.status, newErr(KindBoot, "Waiting on enclave to boot failed: the enclave was terminated"))
		return nil
	}

	s.mu.Lock()
	s.rec.State = StateRunning
	s.rec.BootTimeMs = max(1, time.Since(launched).Milliseconds())
	s.mu.Unlock()
	if err := s.save(); err != nil {
		return s.failStart(inst, err)
	}
	sendStatus(s.status, nil)
	s.logger.Info("heartbeat received", "cid", rec.CID, "boot_ms", s.snapshot().BootTimeMs)
	// Start-up (measuring the EIF, loading the guest, booting) is done:
	// give its garbage back to the host now rather than at the
	// scavenger's pace, as this process stays for the enclave's lifetime.
	debug.FreeOSMemory()

	select {
	case <-inst.Done():
		s.logger.Info("enclave exited", "detail", inst.Result())
		s.finish("exited", inst.Result())
	case <-ctx.Done():
		s.stop(inst)
		s.finish("terminated", "supervisor interrupted")
	case reply := <-s.termReq:
		s.stop(inst)
		s.finish("terminated", "")
		reply <- s.snapshot()
	}
	return nil
}

// failStart stops inst (if any), removes the enclave's directory, reports
// err to the starter and returns err.
func (s *supervisor) failStart(inst Instance, err error) error {
	if inst != nil {
		s.stop(inst)
	}
	// Free the reservation first, so the starter finds nothing left
	// once it reads the status.
	s.finish("failed", err.Error())
	sendStatus(s.status, err)
	return err
}

// stop marks the enclave TERMINATING and stops its VM.
func (s *supervisor) stop(inst Instance) {
	s.mu.Lock()
	s.rec.State = StateTerminating
	s.mu.Unlock()
	if err := s.save(); err != nil {
		s.logger.Warn("record state", "err", err)
	}
	inst.Stop()
	select {
	case <-inst.Done():
	case <-time.After(stopTimeout):
		s.logger.Error("VM did not stop in time", "timeout", stopTimeout)
	}
}

// finish records how the enclave ended and frees its directory (and with
// it its CID, name, slot and CPUs).
func (s *supervisor) finish(event, detail string) {
	rec := s.snapshot()
	line, _ := json.Marshal(struct {
		Time   time.Time
		Event  string
		ID     string `json:"EnclaveID"`
		Name   string `json:"EnclaveName"`
		Detail string `json:",omitempty"`
	}{now(), event, rec.ID, rec.Name, detail})
	if err := s.appendEvent(line); err != nil {
		s.logger.Warn("events log", "err", err)
	}
	if err := s.removeDir(); err != nil {
		s.logger.Error("remove enclave directory", "err", err)
	}
}

func (s *supervisor) snapshot() *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := *s.rec
	return &r
}

func (s *supervisor) save() error {
	rec := s.snapshot()
	if err := writeRecord(s.dir, rec); err != nil {
		return wrapErr(KindFileOperation, err, "save enclave record")
	}
	return nil
}

// sendStatus writes the start status line to w (if any) and closes it.
func sendStatus(w io.Writer, err error) {
	if w == nil {
		return
	}
	st := startStatus{OK: err == nil}
	if err != nil {
		st.Error = err.Error()
		st.Kind = KindOf(err)
	}
	b, _ := json.Marshal(st)
	w.Write(append(b, '\n'))
	if c, ok := w.(io.Closer); ok {
		c.Close()
	}
}

// serve accepts control connections until ln is closed.
func (s *supervisor) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logger.Warn("control socket accept", "err", err)
			}
			return
		}
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
}

// handle serves one control request.
func (s *supervisor) handle(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(requestReadTimeout))
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	var req ctlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		reply(conn, ctlResponse{Error: fmt.Sprintf("bad request: %v", err), Kind: KindInvalidArgument})
		return
	}
	switch req.Op {
	case opDescribe:
		reply(conn, ctlResponse{OK: true, Record: s.snapshot()})
	case opTerminate:
		ch := make(chan *Record, 1)
		select {
		case s.termReq <- ch:
			reply(conn, ctlResponse{OK: true, Record: <-ch})
		case <-s.finished:
			reply(conn, ctlResponse{OK: true, Record: s.snapshot()})
		}
	case opConsole:
		if s.hub == nil {
			reply(conn, ctlResponse{Error: "The enclave was not started with the debug flag set, include '--debug-mode' in the run-enclave command", Kind: KindConsole})
			return
		}
		c := s.hub.subscribe()
		defer c.unsubscribe()
		if err := reply(conn, ctlResponse{OK: true}); err != nil {
			return
		}
		for {
			b, ok := c.next()
			if !ok {
				return
			}
			conn.SetWriteDeadline(time.Now().Add(consoleWriteTimeout))
			if _, err := conn.Write(b); err != nil {
				return
			}
		}
	default:
		reply(conn, ctlResponse{Error: fmt.Sprintf("unknown request %q", req.Op), Kind: KindInvalidArgument})
	}
}

func reply(conn net.Conn, r ctlResponse) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = conn.Write(append(b, '\n'))
	return err
}

// dumper is an Instance that can write its VM's state to the log.
type dumper interface {
	Dump(cause string)
}

// signalDumper is what SIGUSR1 dumps: the VM once it exists. Before, the
// signal only logs that there is no VM yet; without a handler SIGUSR1's
// default action would kill a supervisor still starting its VM.
type signalDumper struct {
	mu sync.Mutex
	d  dumper
}

// set makes d the target of later SIGUSR1s.
func (u *signalDumper) set(d dumper) {
	u.mu.Lock()
	u.d = d
	u.mu.Unlock()
}

// dumpOnSignal makes SIGUSR1 dump u's VM state (or log that there is no VM
// yet) until the returned function is called.
func dumpOnSignal(u *signalDumper, logger *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				u.mu.Lock()
				d := u.d
				u.mu.Unlock()
				if d == nil {
					logger.Warn("SIGUSR1: no VM yet to dump (the enclave is still being launched)")
					continue
				}
				logger.Warn("SIGUSR1: dumping the VM state")
				d.Dump("SIGUSR1")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

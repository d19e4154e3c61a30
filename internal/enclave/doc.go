// Package enclave manages the lifecycle of nitrovm enclaves the way nitro-cli
// does on a Nitro parent instance: it validates run requests against Nitro's
// constraints, reserves an enclave slot, CID, name and CPU IDs in a per-user
// state directory, starts a detached supervisor process that owns the VM,
// and describes, terminates and attaches to the console of running enclaves.
//
// # State directory
//
// Every enclave has a subdirectory of the state directory named after its
// enclave ID. It holds record.json (the enclave's description), ctl.sock (the
// supervisor's control socket), supervisor.log and, in debug mode,
// console.log. Reservations happen under an exclusive flock on the state
// directory's .lock file, so concurrent run-enclave calls never share a
// slot, CID, name or CPU. Entries whose processes are gone are removed by the
// next command that looks at the directory.
//
// # Supervisor
//
// The supervisor (Supervise) builds the VM through a Launcher, reports
// "heartbeat received" or a failure to the process that started it, serves
// the control socket and removes the enclave's directory when the VM exits.
package enclave

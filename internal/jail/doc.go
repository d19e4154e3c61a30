// Package jail contains a VMM process the way Firecracker's jailer does,
// without cgo: a seccomp-BPF allowlist applied to every thread
// (allowlist.go), no new privileges, an unprivileged identity with empty
// capability sets, a private mount namespace showing only what the VMM
// still needs, and resource limits.
//
// The enclave supervisor (internal/enclave) calls these in order once its
// VM is built and before the first vCPU runs; docs/security.md describes
// the resulting security model.
package jail

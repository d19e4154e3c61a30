// Package image turns container images into the two ramdisks of an AWS Nitro
// Enclave image, laid out as nitro-cli lays them out.
//
// The boot ramdisk (rd0) holds `dev/`, the enclave `/init` and, with AWS's
// blobs, `nsm.ko`. The user ramdisk (rd1) is laid out as nitro-cli's
// linuxkit step writes it: `rootfs/` holding the image's root filesystem
// (layers flattened, whiteouts applied) as `docker export` shows it to
// linuxkit (Docker's init layer on top, linuxkit's excludes and its
// /etc/hosts and /etc/resolv.conf), in export's walk order, with hard links
// written as relative symlinks; then the mount points
// `rootfs/{dev,run,sys,var,proc,tmp}` and the files `cmd` and `env`, one
// entry per line, which the init reads before it chroots into `/rootfs` and
// executes the command. Both are uncompressed newc cpio archives; the kernel
// unpacks them on top of each other into one initramfs.
//
// The archives are reproducible: the order depends only on the names, every
// mtime is the same fixed time, inode numbers are assigned in order, and
// nothing of the build host (time, user, umask) reaches them. The same image
// gives the same bytes, hence the same PCRs.
//
// # Security
//
// Image layers are untrusted input. Entry names are cleaned as if rooted at
// `/` (so `../` cannot climb out of `rootfs/`); an entry whose parent in the
// flattened tree is not a directory (for example a symlink pointing outside)
// is dropped, so the kernel never follows a symlink while unpacking. Device
// nodes and sockets are skipped (the enclave's `/dev` is a devtmpfs). File
// contents are spooled to a temporary file, never held in memory, and the
// total size, entry count and name length are capped ([Limits]).
package image

//go:build linux && !(386 || amd64 || arm64 || loong64 || riscv64 || s390x)

package osmem

import "golang.org/x/sys/unix"

// memfdSecret answers ENOSYS: the kernel has no memfd_secret system call
// for this architecture, so secret memory is refused with ErrNoSecret, as on
// a kernel built without it.
func memfdSecret() (uintptr, unix.Errno) { return 0, unix.ENOSYS }

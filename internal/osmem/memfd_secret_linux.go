//go:build linux && (386 || amd64 || arm64 || loong64 || riscv64 || s390x)

package osmem

import "golang.org/x/sys/unix"

// memfdSecret creates a secret memory file (memfd_secret(2), Linux 5.14).
func memfdSecret() (uintptr, unix.Errno) {
	fd, _, errno := unix.Syscall(unix.SYS_MEMFD_SECRET, unix.O_CLOEXEC, 0, 0)
	return fd, errno
}

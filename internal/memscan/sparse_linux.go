//go:build linux

package memscan

import (
	"os"

	"golang.org/x/sys/unix"
)

// seekData returns the data extent [data, hole) of f that starts at or
// after off, by lseek with SEEK_DATA and SEEK_HOLE; data == size when only a
// hole follows off. ok is false when the system cannot tell.
func seekData(f *os.File, off, size int64) (data, hole int64, ok bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	cerr := rc.Control(func(fd uintptr) {
		d, err := unix.Seek(int(fd), off, unix.SEEK_DATA)
		if err == unix.ENXIO { // nothing but a hole up to the end
			data, hole, ok = size, size, true
			return
		}
		if err != nil || d < off {
			return
		}
		h, err := unix.Seek(int(fd), d, unix.SEEK_HOLE)
		if err != nil || h <= d {
			return
		}
		data, hole, ok = d, h, true
	})
	if cerr != nil {
		return 0, 0, false
	}
	return data, hole, ok
}

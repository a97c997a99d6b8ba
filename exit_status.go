//go:build !plan9

package memshuffle

import (
	"os"
	"syscall"
)

// signalStatus is the exit status a shell reports for a process killed by
// sig: 128 plus its number.
func signalStatus(sig os.Signal) int {
	if n, ok := sig.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

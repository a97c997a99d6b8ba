//go:build unix

package memshuffle

import (
	"os"
	"syscall"
	"testing"
)

// TestSignalHandlerStopsItsWatch: the function run on a signal may call the
// stop function of its own watch, as a shutdown routine shared with the
// normal exit path does, and the process still exits with the signal's
// status. stop used to wait for the watching goroutine, which was the one
// calling it: the process hung after the purge and never exited.
func TestSignalHandlerStopsItsWatch(t *testing.T) {
	exited := make(chan error, 1)
	// The handler gets stop through a channel: a signal is no
	// happens-before edge the race detector knows.
	stops := make(chan func(), 1)
	stop := watchSignals([]os.Signal{syscall.SIGUSR2}, func(code int) {
		if code != 128+int(syscall.SIGUSR2) {
			t.Errorf("exit status %d, want %d", code, 128+int(syscall.SIGUSR2))
		}
		exited <- nil
	}, func(os.Signal) {
		stop := <-stops
		stop()
		stop()
	})
	stops <- stop
	// No deferred stop: while the defect stands, it would hang the test
	// binary behind the stuck watcher.
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Skip(err)
	}
	if err := errWithin(t, exited, "no exit after a signal whose handler called stop"); err != nil {
		t.Fatal(err)
	}
}

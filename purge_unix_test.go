//go:build unix

package memshuffle

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestPurgeOnSignal(t *testing.T) {
	s := newTest(t)
	h, _ := Create[[16]byte](s)
	var code atomic.Int32
	exited := make(chan struct{})
	stop := purgeOnSignal([]*Shuffler{s}, func(c int) {
		code.Store(int32(c))
		close(exited)
	})
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Skip(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("no purge after SIGTERM")
	}
	if code.Load() != 128+int32(syscall.SIGTERM) {
		t.Fatalf("exit code %d", code.Load())
	}
	if s.Valid(h) {
		t.Fatal("Shuffler not purged")
	}
	stop()
	stop()
	// A stopped handler leaves the process as it was: nothing is watching.
	s2 := newTest(t)
	stop2 := purgeOnSignal([]*Shuffler{s2}, func(int) { t.Error("exit after stop") })
	stop2()
	if _, err := Create[byte](s2); err != nil {
		t.Fatal(err)
	}
}

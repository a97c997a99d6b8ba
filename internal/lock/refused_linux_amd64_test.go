//go:build !race

package lock

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/seccomptest"
)

// TestBarrierRefused: a process that registered for membarrier can still
// be refused it later, by a seccomp filter installed after start-up (a
// sandbox that shuts the program in once it is set up). Sleepers must then
// still get the lock, not panic. The filter stays for the process's life,
// so the test runs in a child process.
func TestBarrierRefused(t *testing.T) {
	if !asymmetric {
		t.Skip("Unlock uses an atomic store here: no membarrier to refuse")
	}
	refuse := []seccomptest.Rule{seccomptest.Refuse(unix.SYS_MEMBARRIER, unix.EPERM)}
	seccomptest.Run(t, "membarrier-refused", refuse, func(t *testing.T) {
		if !asymmetric {
			t.Fatal("Enable did not register the child for membarrier")
		}
		if _, _, errno := syscall.Syscall(unix.SYS_MEMBARRIER, membarrierPrivateExpedited, 0, 0); errno == 0 {
			t.Fatal("the seccomp filter did not refuse membarrier")
		}
		lostWakeup(t)
		const goroutines, each = 8, 2000
		var m Mutex
		var counter int
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					m.Lock()
					counter++
					for range 200 { // long enough that others go to sleep
						pause()
					}
					m.Unlock()
				}
			})
		}
		wg.Wait()
		if counter != goroutines*each {
			t.Fatalf("counter %d, want %d", counter, goroutines*each)
		}
	})
}

// lostWakeup has a sleeper wait on a lock that is then let go of as a
// holder does whose load of the count came before the sleeper's count,
// which x86 allows once the barrier is refused: a plain store of 0 and no
// token. The sleeper must still take the lock.
func lostWakeup(t *testing.T) {
	var m Mutex
	m.Lock()
	got := sleeper(t, &m)
	time.Sleep(10 * time.Millisecond) // asleep by now, in all likelihood
	m.state.Store(0)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("a sleeper whose barrier was refused missed a release with no token for good")
	}
}

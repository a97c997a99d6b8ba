package seal

import (
	"sync"
	"testing"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/pintest"
)

// TestNewFirstUseConcurrent: the first ciphers a process builds, from
// several goroutines at once, set up the signal guard while the others
// wait for it, which must happen before their goroutines are pinned: a
// pinned goroutine that waits ends the process ("schedule: holding
// locks"). It runs in a fresh process, where nothing has used the guard.
func TestNewFirstUseConcurrent(t *testing.T) {
	if pintest.InFreshProcesses(t, 5) {
		var key [32]byte
		var salt [8]byte
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				m := []Mode{AES256CTR, AES256GCM, ChaCha20Poly1305}[i%3]
				c, err := New(m, &key, &salt, new([ctr.StateSize]byte))
				if err != nil {
					t.Error(err)
					return
				}
				c.Wipe()
			})
		}
		wg.Wait()
	}
}

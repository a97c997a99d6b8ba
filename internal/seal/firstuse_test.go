package seal

import (
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/memshuffle/memshuffle/internal/ctr"
)

// TestNewFirstUseConcurrent: the first ciphers a process builds, from
// several goroutines at once, set up the signal guard while the others
// wait for it, which must happen before their goroutines are pinned: a
// pinned goroutine that waits ends the process ("schedule: holding
// locks"). It runs in a fresh process, where nothing has used the guard.
func TestNewFirstUseConcurrent(t *testing.T) {
	if os.Getenv("SEAL_FIRST_USE") == "1" {
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
		return
	}
	for range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNewFirstUseConcurrent$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SEAL_FIRST_USE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the fresh process failed: %v\n%s", err, out)
		}
	}
}

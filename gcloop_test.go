package memshuffle

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// collectInLoop has a goroutine force collections back to back, pause
// apart, until t ends: stop-the-world phases and the collector's signals
// land at any moment of what t runs meanwhile.
func collectInLoop(t testing.TB, pause time.Duration) {
	stop := make(chan struct{})
	var done sync.WaitGroup
	done.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}
	})
	t.Cleanup(func() { close(stop); done.Wait() })
}

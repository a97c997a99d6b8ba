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
	t.Cleanup(startCollecting(pause))
}

// startCollecting is collectInLoop until the function it returns is called.
func startCollecting(pause time.Duration) (stop func()) {
	quit := make(chan struct{})
	var done sync.WaitGroup
	done.Go(func() {
		for {
			select {
			case <-quit:
				return
			default:
				runtime.GC()
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}
	})
	return func() { close(quit); done.Wait() }
}

package memshuffle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStopRacesPacedWork ends a Shuffler in every way (Close, Purge then
// Close, the background's stop function, its context) at random moments
// while the background shuffler and a scheduled rotation are resting in
// their pacers or faulting in spares, with callers renting and a goroutine
// forcing collections. Every way must return, leave no goroutine of the
// Shuffler's behind, and, once the background has stopped, leave no spare
// mapped or counted. Run it with -race and under GOMAXPROCS=1 and 8 too.
func TestStopRacesPacedWork(t *testing.T) {
	collectInLoop(t, 100*time.Microsecond)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 24 {
		how := round % 4
		t.Run(fmt.Sprintf("round=%d/how=%d", round, how), func(t *testing.T) {
			// 2 MiB arenas: each spare takes 32 pieces and their rests.
			s, err := New(WithShards(2), WithArenaSize(2<<20), WithKeyRotation(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var hs []Handle
			for range 96 {
				h, err := Alloc[byte](s, 32<<10)
				if err != nil {
					t.Fatal(err)
				}
				hs = append(hs, h)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stopBG, err := s.StartBackgroundShuffle(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			var callers sync.WaitGroup
			var quit atomic.Bool
			for g := range 2 {
				callers.Go(func() {
					for i := g; !quit.Load(); i++ {
						h := hs[i%len(hs)]
						if _, err := RentSlice[byte](s, h); err != nil {
							return // closed
						}
						_ = s.Return(h)
					}
				})
			}
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			ended := make(chan struct{})
			start := time.Now()
			go func() {
				defer close(ended)
				switch how {
				case 0:
					_ = s.Close()
				case 1:
					_ = s.Purge()
					_ = s.Close()
				case 2:
					stopBG()
				case 3:
					cancel()
					stopBG()
				}
			}()
			select {
			case <-ended:
				t.Logf("way %d returned in %v", how, time.Since(start))
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				t.Fatalf("way %d did not return:\n%s", how, buf[:runtime.Stack(buf, true)])
			}
			quit.Store(true)
			callers.Wait()
			goroutineGone(t, "memshuffle.(*Shuffler).background")
			if al, au := s.aux.Locked(), s.aux.Unlocked(); how >= 2 && (al != 0 || au != 0) {
				t.Errorf("background stopped with %d locked and %d unlocked bytes of spares counted", al, au)
			}
			if how >= 2 {
				mustCheck(t, s)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			goroutineGone(t, "rotateLoop")
			if st := s.Stats(); st.LockedBytes != 0 || st.UnlockedBytes != 0 {
				t.Errorf("after Close: %d locked, %d unlocked bytes", st.LockedBytes, st.UnlockedBytes)
			}
		})
	}
}

package memshuffle

import (
	"bytes"
	"context"
	"errors"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// oneCycle runs one background cycle over s and stops the background
// shuffler once the cycle has ended.
func oneCycle(t *testing.T, s *Shuffler) {
	t.Helper()
	stop, err := s.StartBackgroundShuffle(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a cycle", func() bool { return s.Stats().BackgroundCycles > 0 })
	stop()
}

func TestBackgroundShuffle(t *testing.T) {
	s := newTest(t, WithShards(2), WithArenaSize(4096))
	m := model{}
	before := map[Handle]uintptr{}
	for i := range 2000 {
		h, _ := Alloc[byte](s, 8+i%50)
		b, _ := RentSlice[byte](s, h)
		for j := range b {
			b[j] = byte(i + j)
		}
		m[h] = bytes.Clone(b)
		s.Return(h)
		before[h] = addrOf(s, h)
	}
	stop, err := s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartBackgroundShuffle(context.Background(), 0); !errors.Is(err, ErrBackgroundRunning) {
		t.Fatalf("second start: %v", err)
	}
	// Readers and writers keep going while entries move under them.
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(w), 1))
			var hs []Handle
			mu.Lock()
			for h := range m {
				hs = append(hs, h)
			}
			mu.Unlock()
			for range 3000 {
				h := hs[r.IntN(len(hs))]
				b, err := RentSliceContext[byte](context.Background(), s, h)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if !bytes.Equal(b, m[h]) {
					t.Error("value changed under the background shuffler")
				}
				b[0]++
				m[h] = bytes.Clone(b)
				mu.Unlock()
				if err := s.Return(h); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "three cycles", func() bool { return s.Stats().BackgroundCycles >= 3 })
	stop()
	stop()
	goroutineGone(t, "memshuffle.(*Shuffler).background")
	mustCheck(t, s)
	verifyModel(t, s, m)
	moved := 0
	for h, a := range before {
		if addrOf(s, h) != a {
			moved++
		}
	}
	if moved < len(before)*9/10 {
		t.Fatalf("only %d of %d entries moved", moved, len(before))
	}
	st := s.Stats()
	// Windows' clock can stand still for a millisecond or more, longer
	// than a step: there every step may have measured 0.
	if st.BackgroundSteps == 0 || st.BackgroundMax < 0 || st.BackgroundMax == 0 && runtime.GOOS != "windows" {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("cycles %d, steps %d, longest step %v", st.BackgroundCycles, st.BackgroundSteps, st.BackgroundMax)
}

func TestBackgroundStops(t *testing.T) {
	// By context.
	s := newTest(t)
	Alloc[byte](s, 32)
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := s.StartBackgroundShuffle(ctx, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a cycle", func() bool { return s.Stats().BackgroundCycles > 0 })
	cancel()
	stop()
	goroutineGone(t, "memshuffle.(*Shuffler).background")
	// A new one may start after the last stopped.
	stop, err = s.StartBackgroundShuffle(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	// By Close, started as an option.
	s2, err := New(WithBackgroundShuffle(0))
	if err != nil {
		t.Fatal(err)
	}
	Alloc[byte](s2, 64)
	waitFor(t, "a cycle", func() bool { return s2.Stats().BackgroundCycles > 0 })
	s2.Close()
	goroutineGone(t, "memshuffle.(*Shuffler).background")
	if _, err := s2.StartBackgroundShuffle(context.Background(), 0); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, err := New(WithBackgroundShuffle(-1)); !errors.Is(err, ErrInvalidOption) {
		t.Fatal(err)
	}
}

// TestSoak has goroutines rent, write, verify, free and expire entries
// while the background shuffler, full shuffles and key rotations run. It
// runs for MEMSHUFFLE_SOAK (a Go duration; default 3s, 1s with -short):
// set MEMSHUFFLE_SOAK=5m for a long run.
func TestSoak(t *testing.T) {
	d := 3 * time.Second
	if testing.Short() {
		d = time.Second
	}
	if v := os.Getenv("MEMSHUFFLE_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(WithArenaSize(4096), WithShuffleOnBorrowReturn(true))
	if err != nil {
		t.Fatal(err)
	}
	stopBG, err := s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(d)
	var ops atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(w), 7))
			type own struct {
				h       Handle
				val     byte
				expires bool
			}
			var mine []own
			for time.Now().Before(deadline) {
				ops.Add(1)
				switch k := r.IntN(10); {
				case len(mine) < 30 || k == 0:
					h, err := Alloc[byte](s, 1+r.IntN(200))
					if err != nil {
						errc <- err
						return
					}
					o := own{h: h}
					if r.IntN(8) == 0 {
						s.SetExpiry(h, time.Now().Add(time.Duration(r.IntN(20))*time.Millisecond))
						o.expires = true
					}
					mine = append(mine, o)
				case k == 1:
					i := r.IntN(len(mine))
					if err := s.Free(mine[i].h); err != nil {
						errc <- err
						return
					}
					mine = append(mine[:i], mine[i+1:]...)
				default:
					o := &mine[r.IntN(len(mine))]
					b, err := RentSlice[byte](s, o.h)
					if o.expires && errors.Is(err, ErrExpired) {
						continue
					}
					if err != nil {
						errc <- err
						return
					}
					for _, c := range b {
						if c != o.val {
							errc <- errors.New("value corrupted")
							return
						}
					}
					o.val = byte(r.Uint32())
					for j := range b {
						b[j] = o.val
					}
					if err := s.Return(o.h); err != nil && !(o.expires && errors.Is(err, ErrExpired)) {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			if err := s.RotateKey(nil, nil); err != nil {
				errc <- err
				return
			}
			if err := s.Shuffle(); err != nil {
				errc <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	stopBG()
	mustCheck(t, s)
	st := s.Stats()
	t.Logf("%v: %d operations; %d rotations, %d shuffles, %d background cycles, %d expired; longest background step %v",
		d, ops.Load(), st.KeyRotations, st.Shuffles, st.BackgroundCycles, st.Expired, st.BackgroundMax)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	goroutineGone(t, "memshuffle.(*Shuffler).background")
}

// TestBackgroundRestartAfterContext: a background shuffler whose context
// ended has stopped, and a new one starts without the old stop function
// being called; that old stop function then leaves the new one running.
func TestBackgroundRestartAfterContext(t *testing.T) {
	s := newTest(t, WithShards(2))
	ctx, cancel := context.WithCancel(context.Background())
	oldStop, err := s.StartBackgroundShuffle(ctx, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	s.closeMu.Lock()
	done := s.bgDone
	s.closeMu.Unlock()
	cancel()
	<-done
	stop, err := s.StartBackgroundShuffle(context.Background(), time.Millisecond)
	if err != nil {
		t.Fatalf("restart after the context ended: %v", err)
	}
	oldStop()
	cycles := s.Stats().BackgroundCycles
	waitFor(t, "a cycle of the new background shuffler", func() bool { return s.Stats().BackgroundCycles > cycles })
	if _, err := s.StartBackgroundShuffle(context.Background(), 0); !errors.Is(err, ErrBackgroundRunning) {
		t.Fatalf("second start while one runs: %v, want ErrBackgroundRunning", err)
	}
	stop()
	stop, err = s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		t.Fatalf("start after stop: %v", err)
	}
	stop()
}

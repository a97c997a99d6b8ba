package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestCloseWhileLongRentLoggerPurges: WithLogger allows a handler of the
// long-rent event to Purge. When Close runs meanwhile, it must not wait for
// the rent watcher while holding what Purge needs: the watcher is inside
// the handler, inside Purge, and would never return.
func TestCloseWhileLongRentLoggerPurges(t *testing.T) {
	var s *Shuffler
	var stopped <-chan struct{} // the watcher's stop channel, which Close closes
	reported := make(chan struct{})
	purged := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "rent held longer") {
			close(reported)
			// Purge once Close has begun.
			<-stopped
			purged <- s.Purge()
		}
		return len(p), nil
	}), nil))
	s, err := New(WithShards(1), WithRentTracking(time.Millisecond), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	stopped = s.stopWatch
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RentSlice[byte](s, h); err != nil { // never returned
		t.Fatal(err)
	}
	<-reported
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := errWithin(t, closed, "Close did not return: it waits for the rent watcher, whose logger waits in Purge for Close"); err != nil {
		t.Fatal(err)
	}
	if err := <-purged; err != nil {
		t.Fatal(err)
	}
	goroutineGone(t, "watchRents")
}

// TestStepWipesExpiredBounded: entries that expire together are wiped a
// step's worth at a time, and the steps that follow wipe the rest. One
// step wiping them all held the shard lock, and kept every Rent of the
// shard waiting, for as long as that took (290 ms for 200,000 entries of
// 1 KiB).
func TestStepWipesExpiredBounded(t *testing.T) {
	const n, size = 1000, 1024
	clk := newTestClock(time.Now())
	s := newTest(t, WithShards(1), withClock(clk), WithDefaultTTL(time.Minute))
	for range n {
		if _, err := Alloc[byte](s, size); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(2 * time.Minute)
	sh := &s.shards[0]
	var later store.UnmapList
	var spare *osmem.Region
	step := func() bool {
		sh.mu.Lock()
		defer later.UnmapAll(&s.aux)
		defer sh.mu.Unlock()
		more, _ := sh.step(&later, &spare, true)
		return more
	}
	sh.mu.Lock()
	sh.startCycle(sh.permutation(sh.bgOrder, int(sh.Slots.Len())), &later)
	sh.mu.Unlock()
	later.UnmapAll(&s.aux)
	more := step()
	if got, most := s.Stats().Expired, uint64(stepBytes/size); got > most || !more {
		t.Fatalf("one step wiped %d entries of %d bytes (at most %d) and reported more=%v", got, size, most, more)
	}
	for steps := 1; more; steps++ {
		if steps > n {
			t.Fatal("the steps never end")
		}
		more = step()
	}
	if got := s.Stats().Expired; got != n {
		t.Fatalf("after the steps: %d of %d entries wiped", got, n)
	}
	if err := s.checkNoneDue(clk.now()); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

// TestCycleDrawsOrderUnlocked: a background cycle draws the order it visits
// a shard's slots in with no lock held. Drawn under the shard lock, a
// permutation of a million slots kept every Rent of the shard waiting 8
// to 14 ms at the start of every cycle.
func TestCycleDrawsOrderUnlocked(t *testing.T) {
	s := newTest(t, WithShards(2))
	for range 100 {
		if _, err := Alloc[byte](s, 64); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing else takes a shard lock until both shards' orders are in:
	// TryLock fails only if the cycle holds it.
	var locked atomic.Int32
	drawn := make(chan struct{}, 2)
	afterCycleOrder = func(sh *shard) {
		if sh.s != s {
			return // another test's Shuffler
		}
		if !sh.mu.TryLock() {
			locked.Add(1)
		} else {
			sh.mu.Unlock()
		}
		select {
		case drawn <- struct{}{}:
		default:
		}
	}
	t.Cleanup(func() { afterCycleOrder = nil })
	stop, err := s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	<-drawn
	<-drawn
	stop()
	if n := locked.Load(); n != 0 {
		t.Fatalf("%d orders drawn with the shard locked", n)
	}
	mustCheck(t, s)
}

// TestClosePinnedWipesNeighbours: Close during a Borrow function
// leaves the shard's arena mapped until the borrow ends, but must wipe it
// at once: another entry of the arena, rented in plaintext, must read
// zeros through its (still mapped) memory right after Close returns, and
// so must the resting ciphertext of a third entry.
func TestClosePinnedWipesNeighbours(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		s := newTest(t, WithShards(1), WithCipher(c))
		secret := []byte("0123456789abcdef-rented-secret!!")
		rented, err := CopyFrom(s, bytes.Clone(secret))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CopyFrom(s, bytes.Clone(secret)); err != nil { // resting
			t.Fatal(err)
		}
		lent, err := Alloc[byte](s, 64)
		if err != nil {
			t.Fatal(err)
		}
		b, err := RentSlice[byte](s, rented)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, secret) {
			t.Fatal("rented entry does not hold the secret")
		}
		sh := &s.shards[0]
		arena := sh.Arenas.Get(sh.Slots.At(rented.slot()).Arena())
		mem := arena.Mem[:arena.Used]
		err = BorrowSlice[byte](s, lent, func([]byte) error {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			// Still mapped: the borrow is pinned.
			if !bytes.Equal(b, make([]byte, len(b))) {
				t.Errorf("%v: rented entry still holds %q after Close", c, b)
			}
			for i, x := range mem {
				if x != 0 {
					t.Errorf("%v: arena byte %d nonzero after Close", c, i)
					break
				}
			}
			return nil
		})
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("%v: borrow ended with %v, want ErrClosed", c, err)
		}
	}
}

// TestPurgeWipesOwnRegion: after Purge every byte of the Shuffler's
// own region (key buffer, round keys of both cipher slots, the shards'
// scratch) is zero, whatever the calls before it left there.
func TestPurgeWipesOwnRegion(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		s := newTest(t, WithShards(2), WithCipher(c))
		for _, n := range []int{1, 31, 200, 5000, 40 << 10} {
			h, err := CopyFrom(s, bytes.Repeat([]byte{0x5a}, n))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RotateKey(nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(); err != nil {
			t.Fatal(err)
		}
		for i, b := range s.own.Data {
			if b != 0 {
				t.Errorf("%v: own region byte %d of %d nonzero after Purge", c, i, len(s.own.Data))
				break
			}
		}
	}
}

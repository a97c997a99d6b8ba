package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/store"
)

// pauseMoves starts a background shuffler on s whose first step that
// copies entries stops once its copying is done, with the shard lock let
// go and its moves not finished. The returned channel receives the shard
// when the step stops; release lets it go on; stop stops the background
// shuffler, as at the end of the test. Steps after the first pass.
func pauseMoves(t *testing.T, s *Shuffler) (paused <-chan *shard, release, stop func()) {
	t.Helper()
	stopped := make(chan *shard, 1)
	goOn := make(chan struct{})
	var once sync.Once
	var first atomic.Bool
	beforeFinishMoves = func(sh *shard) {
		if first.CompareAndSwap(false, true) {
			stopped <- sh
			<-goOn
		}
	}
	release = func() { once.Do(func() { close(goOn) }) }
	stop, err := s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		beforeFinishMoves = nil
		t.Fatal(err)
	}
	// Before the Shuffler's own cleanup, which would wait for the step.
	t.Cleanup(func() {
		release()
		stop()
		beforeFinishMoves = nil
	})
	return stopped, release, stop
}

// movesOf returns, under the shard lock, the slots of sh's entries that
// are moving and of those that are live and not. It fails the test if
// the lock stays taken for 10 seconds: the step that stopped holds it.
func movesOf(t *testing.T, sh *shard) (moving, resting []uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !sh.mu.TryLock() {
		if time.Now().After(deadline) {
			t.Fatal("the shard lock stays taken while a step's copying is done: the step holds it")
		}
		time.Sleep(time.Millisecond)
	}
	defer sh.mu.Unlock()
	for i := range sh.Slots.Len() {
		switch sh.Slots.At(i).State() {
		case store.StateMoving:
			moving = append(moving, i)
		case store.StateLive:
			resting = append(resting, i)
		}
	}
	return moving, resting
}

// bySlot indexes handles by slot, for a Shuffler of one shard.
func bySlot(hs []Handle) map[uint32]Handle {
	m := make(map[uint32]Handle, len(hs))
	for _, h := range hs {
		m[h.slot()] = h
	}
	return m
}

// fillEntries makes n entries of size bytes, each holding its own bytes,
// and returns them with their contents.
func fillEntries(t *testing.T, s *Shuffler, n, size int) ([]Handle, map[Handle][]byte) {
	t.Helper()
	var hs []Handle
	want := make(map[Handle][]byte, n)
	for k := range n {
		b := bytes.Repeat([]byte{byte(k), byte(k >> 8), 0xa5}, size/3+1)[:size]
		h, err := CopyFrom(s, bytes.Clone(b)) // CopyFrom wipes what it copies
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		want[h] = b
	}
	return hs, want
}

// ended reports whether ch has been closed within d.
func ended(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestStepCopiesWithLockLetGo stops a background step between its copying
// and the end of its moves: the shard's lock is free meanwhile, so a Rent
// of an entry that is not moving completes, and the invariants hold with
// moves in flight. A Rent, a View and a Free of a moving entry, and a key
// rotation, wait for the step instead of failing with ErrBusy, and then
// see the entry where it moved, with its bytes; an entry whose deadline
// passes while it moves answers ErrExpired at once and is wiped when the
// move ends.
func TestStepCopiesWithLockLetGo(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(16<<10))
	// 1 KiB entries: the first step moves 64 of them, and 136 rest.
	hs, want := fillEntries(t, s, 200, 1<<10)
	slots := bySlot(hs)
	paused, release, stop := pauseMoves(t, s)
	var sh *shard
	select {
	case sh = <-paused:
	case <-time.After(10 * time.Second):
		t.Fatal("no background step moved anything")
	}
	moving, resting := movesOf(t, sh)
	if len(moving) < 5 || len(resting) == 0 {
		t.Fatalf("%d entries moving, %d resting; want at least 5 and 1", len(moving), len(resting))
	}
	// An entry that is not moving: its Rent must not wait for the step.
	h := slots[resting[0]]
	rented := make(chan struct{})
	go func() {
		defer close(rented)
		b, err := RentSlice[byte](s, h)
		if err != nil {
			t.Errorf("Rent of a resting entry during a step's copying: %v", err)
			return
		}
		if !bytes.Equal(b, want[h]) {
			t.Error("resting entry changed")
		}
		if err := s.Return(h); err != nil {
			t.Error(err)
		}
	}()
	if !ended(rented, 10*time.Second) {
		release()
		t.Fatal("a Rent of an entry no step moves waited for the step's copying: the step holds the shard lock")
	}
	// The check with moves in flight: reservations counted, sources kept.
	mustCheck(t, s)

	// Moving entries: each call waits for the step, then succeeds.
	rentH, viewH, freeH, expH := slots[moving[0]], slots[moving[1]], slots[moving[2]], slots[moving[3]]
	before := addrOf(s, rentH)
	var calls sync.WaitGroup
	waiting := make(chan struct{})
	calls.Go(func() {
		b, err := RentSlice[byte](s, rentH)
		if err != nil {
			t.Errorf("Rent of a moving entry: %v", err)
			return
		}
		if !bytes.Equal(b, want[rentH]) {
			t.Error("Rent of a moving entry: wrong plaintext")
		}
		if err := s.Return(rentH); err != nil {
			t.Error(err)
		}
	})
	calls.Go(func() {
		b, err := ViewSlice[byte](s, viewH)
		if err != nil {
			t.Errorf("View of a moving entry: %v", err)
			return
		}
		if !bytes.Equal(b, want[viewH]) {
			t.Error("View of a moving entry: wrong plaintext")
		}
		if err := s.ReturnView(viewH); err != nil {
			t.Error(err)
		}
	})
	calls.Go(func() {
		if err := s.Free(freeH); err != nil {
			t.Errorf("Free of a moving entry: %v", err)
		}
	})
	calls.Go(func() {
		if err := s.RotateKey(nil, nil); err != nil {
			t.Errorf("RotateKey during a step's copying: %v", err)
		}
	})
	go func() { calls.Wait(); close(waiting) }()
	// Expired while moving: answered at once, wiped when the move ends.
	if err := s.SetExpiry(expH, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := RentSlice[byte](s, expH); !errors.Is(err, ErrExpired) {
		t.Fatalf("Rent of a moving entry past its deadline: %v, want ErrExpired", err)
	}
	if err := s.Return(slots[moving[4]]); !errors.Is(err, ErrNotRented) {
		t.Fatalf("Return of a moving entry nobody rented: %v, want ErrNotRented", err)
	}
	if ended(waiting, 50*time.Millisecond) {
		t.Fatal("calls on a moving entry, or a rotation, went on before the step finished its moves")
	}
	mustCheck(t, s)
	release()
	if !ended(waiting, 10*time.Second) {
		t.Fatal("calls on moving entries still wait after the step went on")
	}
	if addrOf(s, rentH) == before {
		t.Error("the moving entry did not move")
	}
	if s.Valid(freeH) {
		t.Error("freed entry still valid")
	}
	stop()
	mustCheck(t, s)
	if err := s.checkNoneDue(time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h == freeH || h == expH {
			continue
		}
		b, err := RentSlice[byte](s, h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want[h]) {
			t.Fatalf("entry %v changed", h)
		}
		_ = s.Return(h)
	}
	if _, err := RentSlice[byte](s, expH); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired entry: %v", err)
	}
}

// TestEndWaitsForMoves ends a Shuffler (Purge, Close, Purge then Close)
// while a background step has copied entries with the shard lock let go:
// neither may wipe or unmap the arenas under the step, which finishes
// first; after Purge every arena is wiped, with nothing the step wrote
// left.
func TestEndWaitsForMoves(t *testing.T) {
	for _, how := range []string{"purge", "close", "purge+close"} {
		t.Run(how, func(t *testing.T) {
			s := newTest(t, WithShards(1), WithArenaSize(16<<10))
			fillEntries(t, s, 200, 1<<10)
			paused, release, _ := pauseMoves(t, s)
			select {
			case <-paused:
			case <-time.After(10 * time.Second):
				t.Fatal("no background step moved anything")
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				switch how {
				case "purge":
					_ = s.Purge()
				case "close":
					_ = s.Close()
				default:
					_ = s.Purge()
					_ = s.Close()
				}
			}()
			if ended(done, 50*time.Millisecond) {
				t.Fatalf("%s returned while a step had moves in flight", how)
			}
			release()
			if !ended(done, 10*time.Second) {
				t.Fatalf("%s did not return once the step went on", how)
			}
			mustCheck(t, s) // after Purge: every arena wiped
		})
	}
}

// TestMovesInvisible runs users of their own entries (Rent, View,
// RentContext, Free and Alloc, expiries) against a background shuffler
// with no rest between cycles, then ends the Shuffler in one of three
// ways at a random moment. Nobody else borrows a user's entries, so no
// call may fail with ErrBusy: a move is not a borrow. Run it with -race,
// and as a user with the usual memory-lock limit.
func TestMovesInvisible(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	for round := range 6 {
		how := round % 3
		t.Run(fmt.Sprintf("round=%d/how=%d", round, how), func(t *testing.T) {
			s := newTest(t, WithShards(2), WithArenaSize(64<<10))
			stop, err := s.StartBackgroundShuffle(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			var quit atomic.Bool
			var users sync.WaitGroup
			for u := range 3 {
				users.Go(func() { moveUser(t, s, uint64(round*3+u), &quit) })
			}
			time.Sleep(time.Duration(50+rng.IntN(100)) * time.Millisecond)
			switch how {
			case 0:
				quit.Store(true)
				users.Wait()
				stop()
				mustCheck(t, s)
			case 1:
				_ = s.Purge()
				quit.Store(true)
				users.Wait()
				mustCheck(t, s)
			case 2:
				_ = s.Close()
				quit.Store(true)
				users.Wait()
			}
		})
	}
}

// moveUser is one user of TestMovesInvisible: it keeps entries of its
// own of sizes from 16 B to 80 KiB (some larger than a step) and checks
// each read against what it wrote, until quit or the Shuffler closes.
func moveUser(t *testing.T, s *Shuffler, seed uint64, quit *atomic.Bool) {
	rng := mrand.New(mrand.NewPCG(seed, 9))
	want := map[Handle][]byte{}
	var hs []Handle
	closed := func(err error) bool { return errors.Is(err, ErrClosed) }
	for !quit.Load() {
		if len(hs) < 40 || rng.IntN(8) == 0 {
			size := 16 + rng.IntN(2000)
			if rng.IntN(20) == 0 {
				size = 80 << 10
			}
			b := make([]byte, size)
			for k := range b {
				b[k] = byte(rng.Uint32())
			}
			h, err := CopyFrom(s, bytes.Clone(b)) // CopyFrom wipes what it copies
			if closed(err) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			hs = append(hs, h)
			want[h] = b
			if rng.IntN(10) == 0 {
				_ = s.SetExpiry(h, time.Now().Add(time.Duration(rng.IntN(20))*time.Millisecond))
			}
			continue
		}
		k := rng.IntN(len(hs))
		h := hs[k]
		var err error
		switch op := rng.IntN(10); {
		case op < 5:
			var b []byte
			if b, err = RentSlice[byte](s, h); err == nil {
				if !bytes.Equal(b, want[h]) {
					t.Error("rented entry changed")
				}
				b[0]++
				want[h][0]++
				err = s.Return(h)
			}
		case op < 7:
			var b []byte
			if b, err = ViewSlice[byte](s, h); err == nil {
				if !bytes.Equal(b, want[h]) {
					t.Error("viewed entry changed")
				}
				err = s.ReturnView(h)
			}
		case op < 8:
			var b []byte
			if b, err = RentSliceContext[byte](context.Background(), s, h); err == nil {
				if !bytes.Equal(b, want[h]) {
					t.Error("rented entry changed")
				}
				err = s.Return(h)
			}
		default:
			err = s.Free(h)
			if err == nil || errors.Is(err, ErrExpired) {
				delete(want, h)
				hs[k] = hs[len(hs)-1]
				hs = hs[:len(hs)-1]
				continue
			}
		}
		switch {
		case err == nil:
		case closed(err):
			return
		case errors.Is(err, ErrExpired):
			if s.Free(h) == nil {
				delete(want, h)
				hs[k] = hs[len(hs)-1]
				hs = hs[:len(hs)-1]
			}
		default:
			t.Errorf("user of its own entry: %v", err)
			return
		}
	}
}

package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestMovingReturnInFlight: with shuffle-on-borrow-return on, a Return of
// an entry of unlockedMin bytes or more moves it with the shard unlocked,
// as a Return that does not move it encrypts it: the shard's other entries
// can be rented, returned, allocated and freed during the keystream XOR,
// and every time the system is asked to map, lock or unmap memory during
// the Return (the new arena of an oversize entry, the old one it leaves)
// the shard lock is free. The entry moves, keeps its value, and leaves no
// byte behind where it was (the invariant check at cleanup).
func TestMovingReturnInFlight(t *testing.T) {
	for _, size := range []int{unlockedMin, flightSize + 5, store.MaxArenaSize + 5} {
		for _, view := range []bool{false, true} {
			t.Run(fmt.Sprintf("size=%d/view=%v", size, view), func(t *testing.T) {
				testMovingReturnInFlight(t, size, view)
			})
		}
	}
}

func testMovingReturnInFlight(t *testing.T, size int, view bool) {
	s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true))
	sh := &s.shards[0]
	m := model{}
	small := allocPattern(t, s, m, 32, 1)
	big := allocPattern(t, s, m, size, 2)
	borrow, end := RentSlice[byte], s.Return
	if view {
		borrow, end = ViewSlice[byte], s.ReturnView
	}
	b, err := borrow(s, big)
	if err != nil {
		t.Fatal(err)
	}
	was := unsafe.SliceData(b)

	var asked, held int
	var others atomic.Bool // the other entries' calls may map as they like
	osmem.SetFault(func(o osmem.Op) error {
		if !others.Load() && (o == osmem.OpMap || o == osmem.OpLock || o == osmem.OpUnmap) {
			asked++
			if !sh.mu.TryLock() {
				held++
			} else {
				sh.mu.Unlock()
			}
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	n := onFirstFlight(t, func() {
		others.Store(true)
		defer others.Store(false)
		err := ends(t, "work on another entry", started(func() error {
			c, err := RentSlice[byte](s, small)
			if err != nil {
				return err
			}
			if !bytes.Equal(c, m[small]) {
				return errors.New("the small entry changed")
			}
			if err := s.Return(small); err != nil {
				return err
			}
			h, err := Alloc[byte](s, 64)
			if err != nil {
				return err
			}
			return s.Free(h)
		}))
		if err != nil {
			t.Error(err)
		}
	})
	if err := end(big); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	if n.Load() == 0 {
		t.Fatal("the move did not run in flight")
	}
	if held != 0 {
		t.Errorf("the shard lock was held for %d of the %d times the Return asked the system for memory", held, asked)
	}
	if size > store.MaxArenaSize && asked == 0 {
		t.Error("an oversize entry moved without a new arena")
	}
	if b, err = RentSlice[byte](s, big); err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(b) == was {
		t.Error("the entry did not move")
	}
	if err := s.Return(big); err != nil {
		t.Fatal(err)
	}
	verifyModel(t, s, m)
}

// TestMovingReturnRacesEnd: Close or Purge called at any point of a loop of
// moving Returns of an oversize entry, whose new arena is mapped, and old
// one unmapped, with the shard unlocked, leaves nothing mapped that the
// invariant check does not account for, and no call fails with anything
// but ErrClosed.
func TestMovingReturnRacesEnd(t *testing.T) {
	for _, end := range []string{"Close", "Purge"} {
		for round := range 12 {
			s, err := New(WithShards(1), WithShuffleOnBorrowReturn(true))
			if err != nil {
				t.Fatal(err)
			}
			h, err := Alloc[byte](s, store.MaxArenaSize+5)
			if err != nil {
				t.Fatal(err)
			}
			loop := started(func() error {
				for k := 0; ; k++ {
					err := BorrowSlice(s, h, func(b []byte) error {
						b[k%len(b)] = byte(k)
						return nil
					})
					if errors.Is(err, ErrClosed) {
						return nil
					}
					if err != nil {
						return err
					}
				}
			})
			time.Sleep(time.Duration(round) * 3 * time.Millisecond)
			if end == "Close" {
				err = s.Close()
			} else {
				err = s.Purge()
			}
			if err != nil {
				t.Errorf("%s: %v", end, err)
			}
			if err := ends(t, "the borrowing loop", loop); err != nil {
				t.Errorf("%s after %d ms: %v", end, round*3, err)
			}
			if err := s.check(); err != nil {
				t.Errorf("%s after %d ms: %v", end, round*3, err)
			}
			s.Close()
		}
	}
}

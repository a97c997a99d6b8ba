package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestMovingReturnInFlight: with shuffle-on-borrow-return on, a Return of
// an entry of unlockedMin bytes or more moves it with the shard unlocked,
// as a Return that does not move it encrypts it: the shard's other entries
// can be rented, returned, allocated and freed during the keystream XOR,
// and every time the system is asked to map memory (and lock it) or unmap
// it during the Return (the new arena of an oversize entry, the old one it
// leaves) the shard lock is free. The entry moves, keeps its value, and leaves no
// byte behind where it was (the invariant check at cleanup).
func TestMovingReturnInFlight(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		for _, size := range []int{unlockedMin, flightSize + 5, store.MaxArenaSize + 5} {
			for _, view := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/size=%d/view=%v", c, size, view), func(t *testing.T) {
					skipOversizeUnderRace(t, size)
					testMovingReturnInFlight(t, c, size, view)
				})
			}
		}
	}
}

func testMovingReturnInFlight(t *testing.T, c Cipher, size int, view bool) {
	s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true), WithCipher(c))
	sh := &s.shards[0]
	m := model{}
	small := allocPattern(t, s, m, 32, 1)
	big := allocPattern(t, s, m, size, 2)
	borrow, end := RentSlice[byte], s.Return
	if view {
		borrow, end = ViewSlice[byte], s.ReturnView
	}
	if _, err := borrow(s, big); err != nil {
		t.Fatal(err)
	}
	where := func() [2]uint32 {
		sl := sh.Slots.At(big.slot())
		return [2]uint32{sl.Arena(), sl.Off}
	}
	was, movedBefore := where(), s.Stats().BytesMoved

	var others atomic.Bool // the other entries' calls may map as they like
	askedN, heldN := lockedSystemCalls(t, sh, func() bool { return !others.Load() }, osmem.OpMap, osmem.OpUnmap)
	n := onFirstFlight(t, func() {
		others.Store(true)
		defer others.Store(false)
		otherEntryWorks(t, s, m, small)
	})
	if err := end(big); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	if n.Load() == 0 {
		t.Fatal("the move did not run in flight")
	}
	asked, held := askedN.Load(), heldN.Load()
	if held != 0 {
		t.Errorf("the shard lock was held for %d of the %d times the Return asked the system for memory", held, asked)
	}
	if size > store.MaxArenaSize && asked == 0 {
		t.Error("an oversize entry moved without a new arena")
	}
	// Arena index and offset: an address could be the old one again, in
	// an arena mapped where the old one was.
	if where() == was || s.Stats().BytesMoved < movedBefore+uint64(size) {
		t.Error("the entry did not move")
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

// TestTamperInFlight: in the authenticated modes, a large entry is
// decrypted in flight into a new place (openInFlight). A changed bit is
// still reported as ErrTampered by Rent and View, the entry's bytes are
// left exactly as they were, for inspection, the new place is wiped and
// given back (an oversize entry's new arena unmapped: the invariant check
// finds no empty arena), and once the bit is put back the entry reads as
// it was.
func TestTamperInFlight(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		for _, size := range []int{unlockedMin + 3, 200 << 10, store.MaxArenaSize + 5} {
			t.Run(fmt.Sprintf("%v/size=%d", c, size), func(t *testing.T) {
				s := newTest(t, WithCipher(c), WithShards(1))
				m := model{}
				h := allocPattern(t, s, m, size, 3)
				flights := onFirstFlight(t, func() {})
				tampered := uint64(0)
				for n, bit := range []int{0, 8*size - 1, 8 * size, 8*(size+16) - 1} {
					ext := extentOf(s, h)
					ext[bit/8] ^= 1 << (bit % 8)
					found := bytes.Clone(ext)
					var err error
					if n%2 == 0 {
						_, err = RentSlice[byte](s, h)
					} else {
						_, err = ViewSlice[byte](s, h)
					}
					if !errors.Is(err, ErrTampered) {
						t.Fatalf("bit %d: %v, want ErrTampered", bit, err)
					}
					tampered++
					if !bytes.Equal(extentOf(s, h), found) {
						t.Fatalf("bit %d: the tampered entry was changed", bit)
					}
					mustCheck(t, s)
					extentOf(s, h)[bit/8] ^= 1 << (bit % 8)
				}
				if flights.Load() < int32(tampered) {
					t.Errorf("%d of %d decryptions ran in flight", flights.Load(), tampered)
				}
				if got := s.Stats().Tampered; got != tampered {
					t.Errorf("Stats.Tampered = %d, want %d", got, tampered)
				}
				verifyModel(t, s, m)
			})
		}
	}
}

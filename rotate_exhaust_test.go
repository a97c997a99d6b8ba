package memshuffle

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/memshuffle/memshuffle/internal/ctr"
)

// exhaustCounters leaves s with no counter values to hand out, but for
// spare values in every shard's own run.
func exhaustCounters(s *Shuffler, spare uint64) {
	s.ctrs = ctr.NewAllocator(math.MaxUint64 - 10)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.ctrEnd = sh.ctrNext + spare
		sh.mu.Unlock()
	}
}

// TestExhaustedReturnLeavesNoPlaintext: a borrow that ends when the
// counter space is used up cannot encrypt the entry again. It must report
// ErrCounterExhausted and leave no plaintext behind: not in an entry that
// stays rented for good (which Free refuses, and nobody can return), nor
// in the copy Clone makes or the entry CopyFrom fills.
func TestExhaustedReturnLeavesNoPlaintext(t *testing.T) {
	secret := []byte("exhausted-counter secret, 40 bytes long!")
	ends := []struct {
		name string
		end  func(s *Shuffler, h Handle) error
	}{
		{"Return", func(s *Shuffler, h Handle) error {
			if _, err := RentSlice[byte](s, h); err != nil {
				return err
			}
			exhaustCounters(s, 0)
			return s.Return(h)
		}},
		{"ReturnView", func(s *Shuffler, h Handle) error {
			if _, err := ViewSlice[byte](s, h); err != nil {
				return err
			}
			exhaustCounters(s, 0)
			return s.ReturnView(h)
		}},
		{"BorrowSlice", func(s *Shuffler, h Handle) error {
			return BorrowSlice(s, h, func([]byte) error { exhaustCounters(s, 0); return nil })
		}},
		{"BorrowViewSlice", func(s *Shuffler, h Handle) error {
			return BorrowViewSlice(s, h, func([]byte) error { exhaustCounters(s, 0); return nil })
		}},
		{"Clone", func(s *Shuffler, h Handle) error {
			// Counter values for the new entry, none to encrypt it again
			// after the copy.
			exhaustCounters(s, s.shards[0].ciph.Counters(len(secret)))
			_, err := Clone(s, h)
			return err
		}},
	}
	ends = append(ends, struct {
		name string
		end  func(s *Shuffler, h Handle) error
	}{"CopyFrom", func(s *Shuffler, h Handle) error {
		// h is not the point here: a new entry filled with the secret
		// gets the counter values for its Alloc, none for its Return.
		if err := s.Free(h); err != nil {
			return err
		}
		exhaustCounters(s, s.shards[0].ciph.Counters(len(secret)))
		src := bytes.Clone(secret)
		_, err := CopyFrom(s, src)
		if !bytes.Equal(src, secret) {
			t.Error("CopyFrom failed and wiped its source")
		}
		return err
	}})
	for _, c := range allCiphers {
		for _, e := range ends {
			t.Run(c.String()+"/"+e.name, func(t *testing.T) {
				s := newTest(t, WithCipher(c), WithShards(1))
				h, err := CopyFrom(s, bytes.Clone(secret))
				if err != nil {
					t.Fatal(err)
				}
				if err := e.end(s, h); !errors.Is(err, ErrCounterExhausted) {
					t.Fatalf("got %v, want ErrCounterExhausted", err)
				}
				if arenasHold(s, secret) {
					t.Fatal("the plaintext stays in the arena after the borrow ended")
				}
				if st := s.Stats(); st.Rented != 0 || st.Viewed != 0 {
					t.Fatalf("%d rented and %d viewed entries left that nobody can return", st.Rented, st.Viewed)
				}
				if err := s.Free(h); err != nil && !errors.Is(err, ErrInvalidHandle) {
					t.Fatalf("Free: %v", err)
				}
				mustCheck(t, s)
			})
		}
	}
}

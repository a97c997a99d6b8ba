package memshuffle

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

// TestAllocExtentOverflow: an authenticated entry takes its size plus a
// 16-byte tag in an arena, and on a 32-bit platform, where int is 32 bits,
// that sum overflows for the largest sizes MaxEntrySize allows: Random of
// MaxEntrySize bytes with AES-256-GCM on 386 panicked with a slice bounds
// error and left the shard locked, so the next call deadlocked. The same
// path is taken here with sizes whose sum overflows a 64-bit int: each
// must fail with ErrInvalidSize, and the Shuffler must go on working.
func TestAllocExtentOverflow(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithCipher(c), WithShards(1))
			for _, n := range []int{math.MaxInt, math.MaxInt - 15, math.MaxInt - 4095} {
				var err error
				func() {
					defer func() {
						if p := recover(); p != nil {
							err = fmt.Errorf("panic: %v", p)
						}
					}()
					_, err = s.alloc(n, 1)
				}()
				if !errors.Is(err, ErrInvalidSize) && !errors.Is(err, ErrOutOfMemory) {
					t.Fatalf("alloc(%d): %v, want ErrInvalidSize or ErrOutOfMemory", n, err)
				}
				if ov := s.shards[0].Overhead(); ov > 0 && n > math.MaxInt-ov && !errors.Is(err, ErrInvalidSize) {
					t.Fatalf("alloc(%d), whose extent overflows int: %v, want ErrInvalidSize", n, err)
				}
			}
			h, err := Random(s, 32)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Free(h); err != nil {
				t.Fatal(err)
			}
		})
	}
}

package memshuffle

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestRotateCallsBalanced: however RotateKey ends (a nil or closed
// Shuffler, memory refused before the switch, success next to a
// scheduled rotation), it leaves no call counted, or scheduled rotations
// would never rest again.
func TestRotateCallsBalanced(t *testing.T) {
	var none *Shuffler
	if err := none.RotateKey(nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("nil Shuffler: %v", err)
	}

	s := newTest(t, WithCipher(AES256GCM), WithShards(2), WithKeyRotation(time.Millisecond))
	for range 64 {
		if _, err := Alloc[byte](s, 32<<10); err != nil {
			t.Fatal(err)
		}
	}
	// The backups an authenticated rotation needs are refused: RotateKey
	// fails before any shard switches. A scheduled rotation may be the one
	// refused instead; either way the count comes back.
	allow := refuse(t, osmem.OpMap)
	_ = s.RotateKey(nil, nil)
	allow()
	if n := s.rotator.calls.Load(); n != 0 {
		t.Fatalf("after a refused RotateKey %d calls counted", n)
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 3 {
				if err := s.RotateKey(nil, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := s.rotator.calls.Load(); n != 0 {
		t.Fatalf("after 12 RotateKey calls beside scheduled rotations %d calls counted", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateKey(nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed Shuffler: %v", err)
	}
	if n := s.rotator.calls.Load(); n != 0 {
		t.Fatalf("after RotateKey on a closed Shuffler %d calls counted", n)
	}
}

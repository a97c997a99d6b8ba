package memshuffle

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestFaultErrorsTyped: memory refused after New comes back as
// ErrOutOfMemory, whatever kind of memory it was, so that Alloc's reclaim
// and a caller's errors.Is see it, and the entries keep their values.
func TestFaultErrorsTyped(t *testing.T) {
	t.Run("secret memory refused after New", func(t *testing.T) {
		s := newOrSkip(t, WithSecretMemory(), WithShards(1), WithArenaSize(4096))
		h, err := CopyFrom(s, []byte("kept"))
		if err != nil {
			t.Fatal(err)
		}
		var maps atomic.Int64
		osmem.SetFault(func(o osmem.Op) error {
			if o != osmem.OpMap {
				return nil
			}
			maps.Add(1)
			return osmem.ErrInjected
		})
		t.Cleanup(func() { osmem.SetFault(nil) })
		_, err = Alloc[byte](s, 256<<10) // larger than any arena so far
		osmem.SetFault(nil)
		if maps.Load() == 0 {
			t.Fatal("Alloc mapped nothing")
		}
		if !errors.Is(err, ErrOutOfMemory) || !errors.Is(err, ErrNoSecretMemory) {
			t.Fatalf("Alloc with secret memory refused = %v, want ErrOutOfMemory and ErrNoSecretMemory", err)
		}
		mustHold(t, s, h, []byte("kept"))
	})
	t.Run("no room for an authenticated entry's backup", func(t *testing.T) {
		s := newOrSkip(t, WithCipher(AES256GCM), WithLockMode(LockStrict), WithShards(1))
		// Larger than the shard's backup buffer, and made by Alloc, which
		// needs none: Rent maps a larger one.
		h, err := Alloc[byte](s, 256<<10)
		skipLockFailed(t, err)
		if err != nil {
			t.Fatal(err)
		}
		// The buffer is plain memory, which no refused lock stops (see
		// mapBackup): the system refuses to map it, in flight and again
		// under the lock.
		refuse(t, osmem.OpMap)
		_, err = RentSlice[byte](s, h)
		osmem.SetFault(nil)
		if err == nil {
			t.Fatal("Rent succeeded with every mapping refused")
		}
		if !errors.Is(err, ErrOutOfMemory) {
			t.Fatalf("Rent = %v, want ErrOutOfMemory", err)
		}
		mustHold(t, s, h, make([]byte, 256<<10))
	})
}

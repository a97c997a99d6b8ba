package memshuffle

import (
	"errors"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestPurgeLockedBytesIsVmLck: Purge leaves every region mapped, and
// locked, until Close, the Shuffler's own region of keys and scratch
// included; Stats.LockedBytes must go on counting it.
func TestPurgeLockedBytesIsVmLck(t *testing.T) {
	base := vmLck(t)
	s := newTest(t, WithShards(4))
	for range 100 {
		if _, err := Alloc[byte](s, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if got, want, ok := lockedMatches(t, s, base); !ok {
		t.Fatalf("before Purge: Stats.LockedBytes %d, VmLck grew by %d", got, want)
	}
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	if got, want, ok := lockedMatches(t, s, base); !ok {
		t.Fatalf("after Purge: Stats.LockedBytes %d, VmLck grew by %d", got, want)
	}
}

// lockedMatches compares Stats.LockedBytes with the growth of VmLck since
// base, a few times: a region another test left to a goroutine of its own
// may come or go meanwhile, but a miscount shows in every sample.
func lockedMatches(t *testing.T, s *Shuffler, base int64) (got, want int64, ok bool) {
	for range 5 {
		if got, want = lockedAgainstVmLck(t, s, base); got == want {
			return got, want, true
		}
	}
	return got, want, false
}

// TestSecretLockFailureAdvice: secret memory is locked by the kernel
// whatever the LockMode, so when the memlock limit refuses it, the error
// must not suggest LockBestEffort, which is what the Shuffler runs with
// already and which would not help.
func TestSecretLockFailureAdvice(t *testing.T) {
	s := newOrSkip(t, WithSecretMemory(), WithShards(1))
	refuse(t, osmem.OpLock)
	_, err := Alloc[byte](s, 100)
	if !errors.Is(err, ErrLockFailed) {
		t.Fatalf("Alloc with the lock refused: %v, want ErrLockFailed", err)
	}
	if strings.Contains(err.Error(), "LockBestEffort") {
		t.Fatalf("the error suggests LockBestEffort, which does not apply to secret memory: %v", err)
	}
}

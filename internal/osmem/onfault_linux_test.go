package osmem

import (
	"errors"
	"testing"
)

// TestLockOnFaultSeesLength: the lock fault hook, which tests use to model
// the memory-lock limit as root, sees the length of a lock on fault as it
// sees every other lock's, and its refusal leaves the region unlocked.
func TestLockOnFaultSeesLength(t *testing.T) {
	const n = 5 * 4096
	r, err := Map(n, Flags{SmallPages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(r)
	seen := -1
	SetLockFault(func(m int) error {
		seen = m
		return ErrInjected
	})
	t.Cleanup(func() { SetLockFault(nil) })
	err = LockOnFault(r)
	if errors.Is(err, ErrNoOnFault) {
		t.Skip(err)
	}
	if !errors.Is(err, ErrInjected) {
		t.Fatalf("LockOnFault under a hook refusing every length: %v", err)
	}
	if seen != len(r.Data) {
		t.Errorf("the lock fault saw %d bytes, want the region's %d", seen, len(r.Data))
	}
	if r.Locked {
		t.Error("a refused lock left the region marked locked")
	}
}

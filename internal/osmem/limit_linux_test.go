package osmem

import "testing"

// TestBindingLockLimit: where BindingLockLimit reports RLIMIT_MEMLOCK, a
// region larger than it cannot be locked; where it reports no limit though
// RLIMIT_MEMLOCK is set (CAP_IPC_LOCK, as root), it can. CI runs this both
// ways: as root, and as nobody with ulimit -l 8192.
func TestBindingLockLimit(t *testing.T) {
	lim := LockLimit()
	if lim < 0 || lim > 256<<20 {
		t.Skipf("RLIMIT_MEMLOCK %d: no small limit to lock past", lim)
	}
	r, err := Map(int(lim)+64<<10, Flags{Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	locked := r.Locked
	if err := Unmap(r); err != nil {
		t.Fatal(err)
	}
	switch b := BindingLockLimit(); {
	case b >= 0 && locked:
		t.Errorf("BindingLockLimit %d, but %d bytes locked", b, lim+64<<10)
	case b >= 0 && b != lim:
		t.Errorf("BindingLockLimit %d, LockLimit %d", b, lim)
	case b < 0 && !locked:
		t.Errorf("BindingLockLimit reports no limit, but %d bytes past RLIMIT_MEMLOCK (%d) were not locked", lim+64<<10, lim)
	}
	t.Logf("RLIMIT_MEMLOCK %d, binding %d", lim, BindingLockLimit())
}

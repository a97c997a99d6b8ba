package memshuffle

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestSpareLockedBeforeBacked: the background shuffler locks a spare
// before any page of it is backed, so that the lock call backs nothing
// and the pages are backed, and locked, a piece at a time between rests.
// Locked after it was backed, one mlock of a 2 MiB spare stayed in the
// kernel for 0.2-0.4 ms even with every page present, and a caller whose
// CPU the background thread had been woken on waited for all of it.
func TestSpareLockedBeforeBacked(t *testing.T) {
	const arena = 256 << 10
	s := newOrSkip(t, WithShards(1), WithArenaSize(arena), WithLockMode(LockStrict))
	for range 64 {
		if _, err := Alloc[byte](s, 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	// Called by the background goroutine only, one spare at a time.
	var spares, backed int
	beforeSpareLock = func(r *osmem.Region) {
		spares++
		vec := make([]byte, (len(r.Data)+osmem.PageSize()-1)/osmem.PageSize())
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(r.Data))), uintptr(len(r.Data)), uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); errno != 0 {
			t.Error(errno)
		}
		for _, v := range vec {
			backed += int(v & 1)
		}
	}
	t.Cleanup(func() { beforeSpareLock = nil })
	// One cycle, then a long wait.
	oneCycle(t, s)
	// 1 MiB of entries in arenas of 256 KiB: at least four spares.
	if spares < 4 {
		t.Fatalf("a cycle over 1 MiB locked %d spares", spares)
	}
	if backed > 0 {
		t.Errorf("%d pages of %d spares were backed before they were locked, want none", backed, spares)
	}
	st := s.Stats()
	if st.LockFailures > 0 || st.UnlockedBytes > 0 {
		t.Errorf("%d lock failures, %d bytes unlocked", st.LockFailures, st.UnlockedBytes)
	}
}

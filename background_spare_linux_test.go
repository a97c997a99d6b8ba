package memshuffle

import (
	"errors"
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
//
// Where the system cannot lock on fault (no mlock2 before Linux 4.4, a
// system call filter that refuses it, qemu-user), there is no such lock:
// each spare is backed first and locked after, and every spare must still
// end up locked. The test used to count the pages at both lock calls of
// that fallback and failed there (320 pages of 5 spares, counted twice).
func TestSpareLockedBeforeBacked(t *testing.T) {
	spareLockedBeforeBacked(t)
}

func spareLockedBeforeBacked(t *testing.T) {
	const arena = 256 << 10
	s := newOrSkip(t, WithShards(1), WithArenaSize(arena), WithLockMode(LockStrict))
	for range 64 {
		if _, err := Alloc[byte](s, 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	onFault := lockOnFaultWorks(t)
	// Called by the background goroutine only, one spare at a time: the
	// first call for a spare is its first lock, on fault where there is
	// one; the fallback calls again, after backing it, to lock it.
	seen := map[*osmem.Region]bool{}
	var spares, backed, relocked int
	beforeSpareLock = func(r *osmem.Region) {
		if seen[r] {
			relocked++
			return
		}
		seen[r] = true
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
		t.Errorf("%d pages of %d spares were backed before they were first locked, want none", backed, spares)
	}
	switch {
	case onFault && relocked > 0:
		t.Errorf("with a lock on fault, %d of %d spares were locked a second time", relocked, spares)
	case !onFault && relocked != spares:
		t.Errorf("with no lock on fault, %d of %d spares were locked after they were backed", relocked, spares)
	}
	st := s.Stats()
	if st.LockFailures > 0 || st.UnlockedBytes > 0 {
		t.Errorf("%d lock failures, %d bytes unlocked", st.LockFailures, st.UnlockedBytes)
	}
}

// lockOnFaultWorks reports whether osmem.LockOnFault locks here, on a
// region of its own.
func lockOnFaultWorks(t *testing.T) bool {
	t.Helper()
	r, err := osmem.Map(osmem.PageSize(), osmem.Flags{})
	if err != nil {
		t.Fatal(err)
	}
	defer osmem.Unmap(r)
	err = osmem.LockOnFault(r)
	if err != nil && !errors.Is(err, osmem.ErrNoOnFault) {
		t.Skipf("no lock here: %v", err)
	}
	return err == nil
}

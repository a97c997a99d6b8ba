package memshuffle

import (
	"errors"
	"testing"
)

// TestPinnedFreedEntryThenClose: a Borrow
// function returns and frees its own entry, the only one of its arena, so
// Free unmaps the arena at once although the pin still holds mem; a Close
// (from fn, or any goroutine) before fn returns makes endPinned wipe mem
// that was no longer mapped: SIGSEGV, the process died. It wipes only
// memory the closed shard still has mapped now.
func TestPinnedFreedEntryThenClose(t *testing.T) {
	s, err := New(WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	err = BorrowSlice(s, h, func(b []byte) error {
		if err := s.Return(h); err != nil {
			return err
		}
		if err := s.Free(h); err != nil {
			return err
		}
		// Fits no longer in the current arena, now empty: a new one is
		// made current and the old one released, unmapped.
		if _, err := Alloc[byte](s, 1<<20); err != nil {
			return err
		}
		return s.Close()
	})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("BorrowSlice: %v, want ErrClosed", err)
	}
}

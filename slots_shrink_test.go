package memshuffle

import (
	"errors"
	"testing"
)

// TestSlotTablesShrink: after a peak of entries is freed, the slot tables
// give their chunks back (Stats.SlotBytes falls to one chunk per shard), a
// Handle of the peak answers ErrInvalidHandle, and entries made afterwards
// never get a Handle equal to one of the peak's, in the chunks made again.
func TestSlotTablesShrink(t *testing.T) {
	const n = 50000
	s := newTest(t, WithShards(2))
	base := s.Stats().SlotBytes
	old := make([]Handle, n)
	for i := range old {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		old[i] = h
	}
	peak := s.Stats().SlotBytes
	if peak < n*24 {
		t.Fatalf("SlotBytes %d with %d entries: less than 24 bytes each", peak, n)
	}
	for _, h := range old {
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	after := s.Stats().SlotBytes
	// One chunk of 4,096 slots per shard stays, with its free stack, and a
	// few words of bookkeeping.
	if limit := int64(2*4096*(24+2) + 1024); after > limit || after > peak/4 {
		t.Fatalf("SlotBytes: %d before, %d at the peak, %d after freeing every entry; want at most %d", base, peak, after, limit)
	}
	t.Logf("SlotBytes: %d at the peak of %d entries, %d after freeing them", peak, n, after)
	for _, h := range old[:100] {
		if err := s.Free(h); !errors.Is(err, ErrInvalidHandle) {
			t.Fatalf("Free of a freed peak handle: %v, want ErrInvalidHandle", err)
		}
		if _, err := RentSlice[byte](s, h); !errors.Is(err, ErrInvalidHandle) {
			t.Fatalf("Rent of a freed peak handle: %v, want ErrInvalidHandle", err)
		}
	}
	seen := make(map[Handle]bool, n)
	for _, h := range old {
		seen[h] = true
	}
	for range n {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		if seen[h] {
			t.Fatalf("new entry got handle %v, one of the peak's", h)
		}
	}
}

package memshuffle

import "testing"

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
	if got, want := s.Stats().LockedBytes, vmLck(t)-base; got != want {
		t.Fatalf("before Purge: Stats.LockedBytes %d, VmLck grew by %d", got, want)
	}
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Stats().LockedBytes, vmLck(t)-base; got != want {
		t.Fatalf("after Purge: Stats.LockedBytes %d, VmLck grew by %d", got, want)
	}
}

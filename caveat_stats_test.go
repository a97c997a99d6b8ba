package memshuffle

import (
	"fmt"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestStatsProcessFieldsOnEveryPath: LockLimit and SecretMode describe the
// process and the build, not a Shuffler's state, so every snapshot reports
// them alike: a nil Shuffler's, an open one's, with entries or without,
// a closed one's, and a difference from Sub (also from the zero Stats).
// A nil Shuffler's Stats used to be the zero Stats, with a LockLimit of 0
// ("may lock nothing") where the system had no limit or one of 8 MiB.
func TestStatsProcessFieldsOnEveryPath(t *testing.T) {
	var nilS *Shuffler
	open := newTest(t)
	if _, err := Alloc[byte](open, 100); err != nil {
		t.Fatal(err)
	}
	closed, err := New()
	if err != nil {
		t.Fatal(err)
	}
	before := closed.Stats()
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	empty := newTest(t, WithLockMode(LockNone))
	for _, c := range []struct {
		name string
		st   func() Stats
	}{
		{"nil Shuffler", nilS.Stats},
		{"open with an entry", open.Stats},
		{"open, LockNone, empty", empty.Stats},
		{"before Close", func() Stats { return before }},
		{"after Close", closed.Stats},
		{"Sub of two snapshots", func() Stats { return open.Stats().Sub(before) }},
		{"Sub of the zero Stats", func() Stats { return open.Stats().Sub(Stats{}) }},
		{"Sub of a nil Shuffler's", func() Stats { return open.Stats().Sub(nilS.Stats()) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := c.st()
			if want := osmem.LockLimit(); st.LockLimit != want {
				t.Errorf("LockLimit %d, want %d (the process's limit, -1 for none)", st.LockLimit, want)
			}
			if st.SecretMode != SecretMode() {
				t.Errorf("SecretMode %v, want %v", st.SecretMode, SecretMode())
			}
		})
	}
}

// TestStatsClosedGauges: after Close every gauge is zero whichever way the
// Shuffler got there, and the counters stay; a nil Shuffler reports what
// a closed one with no history does.
func TestStatsClosedGauges(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := Alloc[byte](s, 100); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	gauges := Stats{
		Entries: st.Entries, Rented: st.Rented, Viewed: st.Viewed,
		LiveBytes: st.LiveBytes, MappedBytes: st.MappedBytes, Arenas: st.Arenas, BackupBytes: st.BackupBytes,
		LockedBytes: st.LockedBytes, UnlockedBytes: st.UnlockedBytes, DumpableBytes: st.DumpableBytes,
		LongRents: st.LongRents,
	}
	if gauges != (Stats{}) {
		t.Errorf("gauges after Close: %+v", gauges)
	}
	if st.Shuffles != 1 {
		t.Errorf("Shuffles %d after Close, want 1", st.Shuffles)
	}
	var nilS *Shuffler
	want := Stats{LockLimit: osmem.LockLimit(), SecretMode: SecretMode(), SharedDumpableBytes: sharedDumpable()}
	if got := nilS.Stats(); got != want {
		t.Errorf("nil Shuffler: %+v, want %+v", got, want)
	}
}

// TestStatsLockFailuresMatchUnlocked: with LockBestEffort, memory counted
// as unlocked is memory the system refused to lock, so LockFailures counts
// it on every platform. The fallback allocator (js, wasip1 and the like)
// used to report every arena unlocked and no failure at all, where every
// other platform counts each refusal.
//
// Where the system locks everything asked (root, or room under the limit)
// nothing is unlocked and the first case checks nothing: the second
// refuses every lock through the fault seam, so that memory is unlocked
// on every platform and the count must show it.
func TestStatsLockFailuresMatchUnlocked(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			if refuse {
				osmem.SetLockFault(func(int) error { return osmem.ErrInjected })
				t.Cleanup(func() { osmem.SetLockFault(nil) })
			}
			s := newTest(t, WithLockMode(LockBestEffort))
			if _, err := Alloc[byte](s, 100); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if refuse && st.UnlockedBytes == 0 {
				t.Fatalf("every lock refused, and no byte counted unlocked: %+v", st)
			}
			if st.UnlockedBytes > 0 && st.LockFailures == 0 {
				t.Errorf("%d bytes unlocked under LockBestEffort, and no lock failure counted", st.UnlockedBytes)
			}
		})
	}
}

package memshuffle

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/store"
)

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool { return store.AllZero(b) }

// rawBytes returns a copy of an entry's bytes as they sit in memory.
func rawBytes(s *Shuffler, h Handle) ([]byte, error) {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	return bytes.Clone(sh.Bytes(sl)), nil
}

// addrOf returns where an entry sits now.
func addrOf(s *Shuffler, h Handle) uintptr {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return 0
	}
	defer sh.mu.Unlock()
	return uintptr(unsafe.Pointer(&sh.Bytes(sl)[0]))
}

// checkInvariants is check, by the name older tests know it by.
func (s *Shuffler) checkInvariants() error { return s.check() }

func mustCheck(t testing.TB, s *Shuffler) {
	t.Helper()
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}

// newTest returns a Shuffler that, when the test ends, is checked and then
// closed; the checks after Close hold too.
func newTest(t testing.TB, opts ...Option) *Shuffler {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	checkAtCleanup(t, s)
	return s
}

// checkAtCleanup makes s run its invariant check, then close, and run it
// again, at the end of the test.
//
// After a test that failed, they run on a goroutine of their own, given
// cleanupWait: a failure such as a call that never returned may leave a
// shard locked, and a check or Close waiting on it would hold the whole
// test binary until its -timeout, with no word of which test it was.
func checkAtCleanup(t testing.TB, s *Shuffler) {
	t.Cleanup(func() {
		if !t.Failed() {
			for _, err := range checkClose(s) {
				t.Error(err)
			}
			return
		}
		done := make(chan []error, 1)
		go func() { done <- checkClose(s) }()
		select {
		case errs := <-done:
			for _, err := range errs {
				t.Error(err)
			}
		case <-time.After(cleanupWait):
			t.Errorf("the check and Close at cleanup still running after %v, left running", cleanupWait)
		}
	})
}

// cleanupWait is how long checkAtCleanup waits for the check and Close
// after a failed test.
const cleanupWait = 10 * time.Second

// checkClose runs s's invariant check, closes s and runs the check again.
func checkClose(s *Shuffler) []error {
	var errs []error
	if err := s.check(); err != nil {
		errs = append(errs, fmt.Errorf("at cleanup: %w", err))
	}
	if err := s.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.check(); err != nil {
		errs = append(errs, fmt.Errorf("after Close: %w", err))
	}
	return errs
}

// memOf returns the memory an entry sits in now, aliased, not copied.
func memOf(s *Shuffler, h Handle) []byte {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil
	}
	defer sh.mu.Unlock()
	return sh.Bytes(sl)
}

// TestCheckFindsCorruption plants one fault of each kind the checker looks
// for and expects it reported: a checker that finds nothing proves nothing.
func TestCheckFindsCorruption(t *testing.T) {
	cases := []struct {
		name  string
		plant func(sh *shard, h Handle)
		want  string
	}{
		{"stale byte", func(sh *shard, h Handle) {
			a := sh.Arenas.Get(sh.Slots.At(h.slot()).Arena())
			a.Mem[len(a.Mem)-1] = 1
		}, "stale bytes"},
		{"lost free space", func(sh *shard, h Handle) {
			sl := sh.Slots.At(h.slot())
			ai, off := sl.Arena(), sl.Off
			sh.Drop(sl, nil)
			sh.freeSlot(h.slot(), sl)
			sh.Arenas.FreeSpace().Remove(ai, off)
		}, "neither an entry nor free space"},
		{"arena count", func(sh *shard, h Handle) { sh.Arenas.Get(sh.Slots.At(h.slot()).Arena()).Bytes++ }, "counts"},
		{"rent record", func(sh *shard, h Handle) { sh.rents = map[Handle]rentRecord{h: {}} }, "rent record"},
		{"counter run", func(sh *shard, h Handle) { sh.Slots.At(h.slot()).SetCtr(sh.s.ctrs.Next()) }, "counter values not yet handed out"},
		{"viewers while live", func(sh *shard, h Handle) { sh.Slots.At(h.slot()).AddViewer() }, "viewers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(WithShards(1), WithArenaSize(4096))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var hs []Handle
			for range 8 {
				h, err := Alloc[byte](s, 40)
				if err != nil {
					t.Fatal(err)
				}
				hs = append(hs, h)
			}
			if err := s.check(); err != nil {
				t.Fatalf("before planting: %v", err)
			}
			sh := &s.shards[0]
			sh.mu.Lock()
			c.plant(sh, hs[3])
			sh.mu.Unlock()
			err = s.check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("check after %s: %v, want an error about %q", c.name, err, c.want)
			}
			// Leave the Shuffler closable: Close does not need the records.
			sh.mu.Lock()
			sh.rents = nil
			sh.mu.Unlock()
		})
	}
}

// TestCheckPurgedRentWrites: what a slice from Rent writes after Purge
// stays until Close, as Purge's doc says, so the checker allows it in a
// shard that had an entry rented when it was purged, and still finds a
// byte left in one that had none.
func TestCheckPurgedRentWrites(t *testing.T) {
	for _, rented := range []bool{true, false} {
		t.Run(fmt.Sprintf("rented=%v", rented), func(t *testing.T) {
			s, err := New(WithShards(1))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			h, err := CopyFrom(s, []byte("purged while rented"))
			if err != nil {
				t.Fatal(err)
			}
			mem := memOf(s, h)
			var b []byte
			if rented {
				if b, err = RentSlice[byte](s, h); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Purge(); err != nil {
				t.Fatal(err)
			}
			if err := s.check(); err != nil {
				t.Fatalf("after Purge: %v", err)
			}
			if rented {
				copy(b, "written after Purge")
			} else {
				mem[0] = 1
			}
			err = s.check()
			if rented && err != nil {
				t.Fatalf("a rented slice written after Purge: %v", err)
			}
			if !rented && (err == nil || !strings.Contains(err.Error(), "not wiped by Purge")) {
				t.Fatalf("a byte planted after Purge: %v, want an error about the wipe", err)
			}
		})
	}
}

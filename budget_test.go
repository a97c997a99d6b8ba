package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// refuse makes every call of op fail until the test ends or the returned
// function is called.
func refuse(t *testing.T, op osmem.Op) (allow func()) {
	osmem.SetFault(func(o osmem.Op) error {
		if o == op {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	return func() { osmem.SetFault(nil) }
}

// halfFull fills one shard's small arenas with 64-byte entries and frees
// every other one, leaving each arena half full, and returns the live
// entries with their values. The entries that stay are rented while the
// others are freed, so that compaction cannot tidy up as they go.
func halfFull(t *testing.T, s *Shuffler) model {
	t.Helper()
	r := mrand.New(mrand.NewPCG(5, 6))
	m := model{}
	var hs []Handle
	for range 4096 {
		h, err := Alloc[byte](s, 64)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for i, h := range hs {
		if i%2 == 1 {
			b, _ := RentSlice[byte](s, h)
			fill(r, b)
			m[h] = bytes.Clone(b)
		}
	}
	for i, h := range hs {
		if i%2 == 0 {
			if err := s.Free(h); err != nil {
				t.Fatal(err)
			}
		}
	}
	for h := range m {
		if err := s.Return(h); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func checkModel(t *testing.T, s *Shuffler, m model) {
	t.Helper()
	for h, v := range m {
		if got := readAll(t, s, h); !bytes.Equal(got, v) {
			t.Fatalf("entry %v changed", h)
		}
	}
}

// TestShuffleWithoutMemory: when no arena can be mapped, Shuffle packs the
// entries into the holes of the arenas that stay and releases the others,
// instead of giving up.
func TestShuffleWithoutMemory(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := halfFull(t, s)
	before := s.Stats()
	refuse(t, osmem.OpMap)
	err := s.Shuffle()
	if !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("Shuffle without memory: %v, want ErrOutOfMemory", err)
	}
	mustCheck(t, s)
	after := s.Stats()
	t.Logf("live %d: mapped %d before, %d after", after.LiveBytes, before.MappedBytes, after.MappedBytes)
	if limit := after.LiveBytes + after.LiveBytes/4 + 4096; after.MappedBytes > limit {
		t.Fatalf("after Shuffle without memory: %d bytes mapped for %d live (limit %d)", after.MappedBytes, after.LiveBytes, limit)
	}
	checkModel(t, s, m)
}

// TestAllocWithoutMemory: an allocation that finds no hole large enough
// and cannot map an arena compacts, in bounded steps, and fits into the
// holes that makes. Every hole is 64 bytes to begin with: without
// compaction not one 128-byte entry would fit.
func TestAllocWithoutMemory(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := halfFull(t, s)
	sh := &s.shards[0]
	sh.mu.Lock()
	free := sh.Arenas.FreeSpace().Bytes()
	sh.mu.Unlock()
	refuse(t, osmem.OpMap)
	n := 0
	for {
		h, err := Alloc[byte](s, 128)
		if err != nil {
			if !errors.Is(err, ErrOutOfMemory) {
				t.Fatalf("Alloc without memory: %v, want ErrOutOfMemory", err)
			}
			break
		}
		m[h] = make([]byte, 128)
		n++
	}
	mustCheck(t, s)
	t.Logf("%d allocations of 128 bytes into %d free bytes", n, free)
	if n < 128 {
		t.Fatalf("only %d allocations of 128 bytes fit into %d free bytes", n, free)
	}
	checkModel(t, s, m)
}

// TestLockFailedMessage: the error names the limit, its value, and how to
// raise it; Stats reports the limit.
func TestLockFailedMessage(t *testing.T) {
	refuse(t, osmem.OpLock)
	_, err := New(WithLockMode(LockStrict))
	if !errors.Is(err, ErrLockFailed) {
		t.Fatalf("New with locks refused: %v, want ErrLockFailed", err)
	}
	msg := err.Error()
	if lim := osmem.LockLimit(); lim >= 0 {
		for _, want := range []string{"RLIMIT_MEMLOCK", "ulimit -l", "LockBestEffort"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %s", msg, want)
			}
		}
	}
	osmem.SetFault(nil)
	s := newTest(t)
	if got, want := s.Stats().LockLimit, osmem.LockLimit(); got != want {
		t.Fatalf("Stats.LockLimit %d, want %d", got, want)
	}
}

// TestUnlockedLoggedOnceThenLocked: with LockBestEffort, arenas the system
// will not lock are logged once, not at every allocation, and are locked
// once it allows again.
func TestUnlockedLoggedOnceThenLocked(t *testing.T) {
	var warnings atomic.Int32
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("not locked")) {
			warnings.Add(1)
		}
		return len(p), nil
	}), nil))
	// Once allowed, the 128 KiB its entries fill must all be locked.
	needLockRoom(t, 512<<10)
	s := newTest(t, WithShards(2), WithArenaSize(4096), WithLogger(logger))
	allow := refuse(t, osmem.OpLock)
	for range 2000 {
		if _, err := Alloc[byte](s, 64); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.UnlockedBytes == 0 || st.LockFailures < 2 {
		t.Fatalf("with locks refused: %d bytes unlocked, %d lock failures", st.UnlockedBytes, st.LockFailures)
	}
	if n := warnings.Load(); n != 1 {
		t.Fatalf("%d lock failures logged %d times, want once", st.LockFailures, n)
	}
	allow()
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
	if st := s.Stats(); st.UnlockedBytes != 0 {
		t.Fatalf("after Shuffle with locks allowed again: %d bytes unlocked", st.UnlockedBytes)
	}
}

// TestBackgroundWithoutMemory: a background cycle that cannot map fresh
// arenas compacts into the holes of those that stay, and releases what it
// empties.
func TestBackgroundWithoutMemory(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := halfFull(t, s)
	before := s.Stats()
	refuse(t, osmem.OpMap)
	for range 4 {
		if !s.cycle(context.Background(), nil) {
			t.Fatal("background cycle stopped")
		}
	}
	mustCheck(t, s)
	after := s.Stats()
	t.Logf("live %d: mapped %d before, %d after four cycles", after.LiveBytes, before.MappedBytes, after.MappedBytes)
	if limit := after.LiveBytes + after.LiveBytes/4 + 4096; after.MappedBytes > limit {
		t.Fatalf("after background cycles without memory: %d bytes mapped for %d live (limit %d)", after.MappedBytes, after.LiveBytes, limit)
	}
	checkModel(t, s, m)
}

package memshuffle

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestLockSmallLimitStoresEntries: under a small RLIMIT_MEMLOCK (64 KiB, the
// kernel default before Linux 5.16) LockStrict must still store entries
// that fit in what is left of the limit, and LockBestEffort lock them: a
// first arena of the default 64 KiB beside the Shuffler's own page never
// fit, so every Alloc failed under LockStrict and every entry stayed
// unlocked under LockBestEffort. Runs only as a user held to such a limit
// (nobody with ulimit -l 64).
func TestLockSmallLimitStoresEntries(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 16<<10 || lim > 256<<10 {
		t.Skip("needs a binding RLIMIT_MEMLOCK of 16 to 256 KiB: run as nobody with ulimit -l 64")
	}
	for _, mode := range []LockMode{LockStrict, LockBestEffort} {
		s := newTest(t, WithLockMode(mode), WithShards(1))
		// A 32-byte secret takes one page; the limit has room for many.
		n := 0
		var err error
		for n < 8 {
			if _, err = Alloc[byte](s, 32); err != nil {
				break
			}
			n++
		}
		st := s.Stats()
		t.Logf("mode %d: limit %d: %d entries of 32 bytes stored, err %v; locked %d unlocked %d mapped %d", mode, lim, n, err, st.LockedBytes, st.UnlockedBytes, st.MappedBytes)
		if mode == LockStrict && n == 0 {
			t.Errorf("LockStrict under RLIMIT_MEMLOCK=%d: not one 32-byte entry could be stored (%v), with %d bytes locked", lim, err, st.LockedBytes)
		}
		if mode == LockBestEffort && st.UnlockedBytes > 0 && st.LockedBytes+int64(osmem.PageSize()) <= lim-int64(osmem.PageSize()) {
			t.Errorf("LockBestEffort under RLIMIT_MEMLOCK=%d: %d bytes of 32-byte secrets left unlocked with only %d bytes locked", lim, st.UnlockedBytes, st.LockedBytes)
		}
		s.Close()
	}
}

// TestShuffleUniformOverFreshMax: in a process held to RLIMIT_MEMLOCK
// (nobody, ulimit -l 8192, as .ci/run runs it), Shuffle caps its fresh
// arenas at freshMax (4 MiB there), while an entry up to MaxArenaSize
// (16 MiB) still shares arenas. A shard whose entries all had one size
// over the cap went to layoutUniform, which mapped arenas of the cap that
// hold no entry until the system refused a mapping: tens of thousands of
// mappings, under the shard lock, then ErrOutOfMemory, on every Shuffle.
func TestShuffleUniformOverFreshMax(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 0 || lim > 64<<20 {
		t.Skip("needs a binding RLIMIT_MEMLOCK: run as nobody with ulimit -l 8192")
	}
	s := newTest(t, WithShards(1))
	// Just past the cap freshMax sets (see shuffle.go); never oversize.
	n := int(max(lim/8, 4<<20)) + 1
	if lim/2 < 4<<20 {
		n = int(lim/8) + 1
	}
	h, err := Alloc[byte](s, n)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	maxMaps := 0
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			default:
			}
			b, _ := os.ReadFile("/proc/self/maps")
			maxMaps = max(maxMaps, bytes.Count(b, []byte("\n")))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	err = s.Shuffle()
	close(done)
	<-sampled // maxMaps is the sampler's until it has returned
	d := time.Since(start)
	st := s.Stats()
	t.Logf("Shuffle of one entry of %d bytes (limit %d): %v in %v; up to %d mappings; LockFailures %d", n, lim, err, d, maxMaps, st.LockFailures)
	if err != nil || st.LockFailures > 10 || maxMaps > 10000 {
		t.Errorf("Shuffle of a single %d-byte entry: err %v, %v, %d lock refusals, up to %d mappings in the process", n, err, d, st.LockFailures, maxMaps)
	}
	if _, err := RentSlice[byte](s, h); err != nil {
		t.Error(err)
	}
}

// TestSecretMemorySmallLimitStoresEntries: secret memory counts against
// RLIMIT_MEMLOCK whatever the LockMode, so under a 64 KiB limit a Shuffler
// WithSecretMemory and LockNone must get arenas that fit too.
func TestSecretMemorySmallLimitStoresEntries(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 16<<10 || lim > 256<<10 {
		t.Skip("needs a binding RLIMIT_MEMLOCK of 16 to 256 KiB: run as nobody with ulimit -l 64")
	}
	s, err := New(WithSecretMemory(), WithLockMode(LockNone), WithShards(1))
	if errors.Is(err, ErrNoSecretMemory) {
		t.Skipf("no secret memory here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 8 {
		if _, err := Alloc[byte](s, 32); err != nil {
			t.Fatalf("entry %d of 32 bytes in secret memory under RLIMIT_MEMLOCK=%d: %v", i, lim, err)
		}
	}
}

// TestStrictArenaOverLimitRefusedByNew: a WithArenaSize that cannot be
// locked beside the Shuffler's own memory, under LockStrict (or secret
// memory), made every Alloc fail with ErrLockFailed while New succeeded.
// New now refuses it, and still accepts the same size where a refusal is
// not an error, and a size that fits. Runs only as a user held to a limit
// of at most 8 MiB (nobody with ulimit -l 64 or 8192, as .ci/run runs it).
func TestStrictArenaOverLimitRefusedByNew(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 16<<10 || lim > 8<<20 {
		t.Skip("needs a binding RLIMIT_MEMLOCK of 16 KiB to 8 MiB: run as nobody with ulimit -l 64 or 8192")
	}
	over := int(min(lim*2, 1<<30))
	_, err := New(WithLockMode(LockStrict), WithArenaSize(over), WithShards(1))
	if !errors.Is(err, ErrLockFailed) {
		t.Fatalf("New(LockStrict, WithArenaSize(%d)) under RLIMIT_MEMLOCK=%d: %v, want ErrLockFailed", over, lim, err)
	}
	t.Log(err)
	// Secret memory is locked whatever the LockMode, so the same size is
	// refused there too; but where the system has no secret memory, New
	// says that first, as it does for any size.
	_, errSecret := New(WithSecretMemory(), WithLockMode(LockNone), WithArenaSize(over), WithShards(1))
	plain, errPlain := New(WithSecretMemory(), WithLockMode(LockNone), WithShards(1))
	if errPlain == nil {
		plain.Close()
	}
	if errors.Is(errPlain, ErrNoSecretMemory) {
		if !errors.Is(errSecret, ErrNoSecretMemory) {
			t.Errorf("no secret memory here (%v), but New with WithArenaSize(%d) said %v", errPlain, over, errSecret)
		}
	} else if !errors.Is(errSecret, ErrLockFailed) {
		t.Errorf("New(WithSecretMemory, WithArenaSize(%d)) under RLIMIT_MEMLOCK=%d: %v, want ErrLockFailed", over, lim, errSecret)
	}
	s := newTest(t, WithLockMode(LockBestEffort), WithArenaSize(over), WithShards(1))
	if _, err := Alloc[byte](s, 32); err != nil {
		t.Errorf("LockBestEffort with the same arena size: Alloc: %v", err)
	}
	s = newTest(t, WithLockMode(LockStrict), WithArenaSize(4096), WithShards(1))
	if _, err := Alloc[byte](s, 32); err != nil {
		t.Errorf("LockStrict with one-page arenas under RLIMIT_MEMLOCK=%d: Alloc: %v", lim, err)
	}
}

// TestArenaSizeAtLockLimit: New accepts an arena size under LockStrict or
// with secret memory only if the first Alloc can lock such an arena beside
// the Shuffler's own memory. Sizes are tried from the limit down, a page
// at a time: each New either fails with ErrLockFailed or makes a Shuffler
// whose Alloc succeeds. With secret memory, sizes up to two pages too
// large passed New and failed every Alloc: the kernel charges the arena's
// guard pages to the limit too.
func TestArenaSizeAtLockLimit(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 16<<10 || lim > 8<<20 {
		t.Skip("needs a binding RLIMIT_MEMLOCK of 16 KiB to 8 MiB: run as nobody with ulimit -l 64 or 8192")
	}
	// New holds an arena against the limit, not against what the process
	// has locked already: that must be nothing, so that the largest arena
	// New accepts is one Alloc can lock.
	store.GiveBackIdle(store.IdleDrains())
	if n := vmLck(t); n != 0 {
		t.Skipf("%d bytes are locked in the process already (a Shuffler an earlier test left open?)", n)
	}
	page := osmem.PageSize()
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"strict", []Option{WithLockMode(LockStrict)}},
		{"secret", []Option{WithSecretMemory()}},
	} {
		accepted := 0
		for size := int(lim) &^ (page - 1); size >= page && accepted == 0; size -= page {
			s, err := New(append(c.opts, WithArenaSize(size), WithShards(1))...)
			if errors.Is(err, ErrNoSecretMemory) {
				t.Logf("%s: %v", c.name, err)
				break
			}
			if err != nil {
				if !errors.Is(err, ErrLockFailed) {
					t.Fatalf("%s: New with WithArenaSize(%d): %v, want ErrLockFailed or success", c.name, size, err)
				}
				continue
			}
			accepted = size
			_, err = Alloc[byte](s, 1)
			if cerr := s.Close(); cerr != nil {
				t.Fatal(cerr)
			}
			if err != nil {
				t.Errorf("%s: New accepted WithArenaSize(%d) under RLIMIT_MEMLOCK=%d, then Alloc failed: %v", c.name, size, lim, err)
			}
		}
		if accepted != 0 {
			t.Logf("%s: the largest arena New accepts under %d bytes is %d", c.name, lim, accepted)
		}
	}
}

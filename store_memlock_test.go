package memshuffle

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestStoreStrictLockLimit fills a LockStrict Shuffler up to
// RLIMIT_MEMLOCK, then shuffles, frees a third and fills again, five
// times: every refusal is ErrLockFailed or ErrOutOfMemory, nothing is ever
// unlocked, the invariants hold and every entry keeps its value. It runs
// only without CAP_IPC_LOCK: as user nobody with ulimit -l 8192.
func TestStoreStrictLockLimit(t *testing.T) {
	lim := osmem.LockLimit()
	if lim < 0 || lim > 64<<20 || os.Geteuid() == 0 {
		t.Skip("needs a small RLIMIT_MEMLOCK and no CAP_IPC_LOCK: run as an unprivileged user with ulimit -l 8192")
	}
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		opts := []Option{WithLockMode(LockStrict), WithShards(2), WithCipher(c)}
		if c == ChaCha20Poly1305 {
			opts = append(opts, WithSecretMemory())
		}
		s := newOrSkip(t, opts...)
		r := mrand.New(mrand.NewPCG(1, 2))
		m := model{}
		var hs []Handle
		fillUp := func() {
			for len(m) < 100000 {
				n := 1 + r.IntN(3000)
				h, err := Alloc[byte](s, n)
				if err != nil {
					if !errors.Is(err, ErrLockFailed) && !errors.Is(err, ErrOutOfMemory) {
						t.Fatalf("Alloc at the limit: %v", err)
					}
					t.Logf("%v: full at %d entries: %v", c, len(m), err)
					return
				}
				b, err := RentSlice[byte](s, h)
				if err != nil {
					t.Fatalf("Rent at the limit: %v", err)
				}
				fill(r, b)
				m[h] = bytes.Clone(b)
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
				hs = append(hs, h)
			}
			t.Fatalf("%v: %d entries and no refusal under a limit of %d bytes", c, len(m), lim)
		}
		fillUp()
		mustCheck(t, s)
		st := s.Stats()
		if st.UnlockedBytes != 0 || st.LockedBytes > lim {
			t.Fatalf("strict: %d unlocked, %d locked, limit %d", st.UnlockedBytes, st.LockedBytes, lim)
		}
		for round := range 5 {
			if err := s.Shuffle(); err != nil && !errors.Is(err, ErrLockFailed) && !errors.Is(err, ErrOutOfMemory) {
				t.Fatalf("Shuffle: %v", err)
			}
			mustCheck(t, s)
			checkModel(t, s, m)
			// Free a third, then fill again.
			var keep []Handle
			for i, h := range hs {
				if (i+round)%3 == 0 {
					if err := s.Free(h); err != nil {
						t.Fatal(err)
					}
					delete(m, h)
				} else {
					keep = append(keep, h)
				}
			}
			hs = keep
			mustCheck(t, s)
			fillUp()
			mustCheck(t, s)
			checkModel(t, s, m)
			st := s.Stats()
			if st.UnlockedBytes != 0 {
				t.Fatalf("strict: %d unlocked", st.UnlockedBytes)
			}
			t.Logf("round %d: %d entries, %d live, %d mapped, %d locked", round, st.Entries, st.LiveBytes, st.MappedBytes, st.LockedBytes)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShuffleOverLockLimitKeepsLocked: a shard holding more than
// RLIMIT_MEMLOCK (12 MB in one shard under ulimit -l 8192, LockBestEffort)
// keeps at least half the limit locked across Shuffles (5.2 MB, of 7.9
// before the first; at limits of 1, 2 and 4 MiB, 88% of it). Shuffle used
// to move the shard into one fresh arena of its whole size, which no lock
// could ever take: from 7.9 MB locked to the Shuffler's own 4 KiB, for
// good. It runs only without CAP_IPC_LOCK: as user nobody with ulimit -l
// 8192, and at any limit from 512 KiB, eight of the smallest arenas.
func TestShuffleOverLockLimitKeepsLocked(t *testing.T) {
	lim := osmem.LockLimit()
	if lim < 8*64<<10 || lim > 64<<20 || osmem.BindingLockLimit() < 0 {
		t.Skip("needs a small RLIMIT_MEMLOCK, 512 KiB at least, and no CAP_IPC_LOCK: run as an unprivileged user with ulimit -l 8192")
	}
	s := newTest(t, WithShards(1))
	r := mrand.New(mrand.NewPCG(1, 2))
	for total := int64(0); total < lim*3/2; {
		n := 500 + r.IntN(1000)
		if _, err := Alloc[byte](s, n); err != nil {
			t.Fatal(err)
		}
		total += int64(n)
	}
	before := s.Stats()
	if before.LockedBytes < lim/2 {
		t.Fatalf("%d bytes locked before any Shuffle, limit %d", before.LockedBytes, lim)
	}
	for i := range 3 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		t.Logf("Shuffle %d: %d arenas, %d locked, %d unlocked (before: %d arenas, %d locked), limit %d",
			i, st.Arenas, st.LockedBytes, st.UnlockedBytes, before.Arenas, before.LockedBytes, lim)
		if st.LockedBytes < lim/2 {
			t.Errorf("Shuffle %d: %d bytes locked, %d before, %d unlocked, limit %d",
				i, st.LockedBytes, before.LockedBytes, st.UnlockedBytes, lim)
		}
		mustCheck(t, s)
	}
}

package memshuffle

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// denseProbe runs gather on shard k, as Shuffle would, and reports whether
// it takes the dense path, and whether some arena would then be emptied
// entry by entry (not vacated whole). When the path is dense it checks,
// independently of gather, what moveDense relies on: every entry of the
// shard is live and of one extent, and each arena's entries sit at 0,
// ext, 2*ext, ... with nothing above them below Used.
func denseProbe(t *testing.T, s *Shuffler, k int) (dense, partial bool) {
	t.Helper()
	sh := &s.shards[k]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	saved := sh.work
	sh.work = shuffleWork{}
	sh.work.reset()
	n, _, _ := sh.gather()
	dense = n > 0 && sh.work.dense
	ext := uint32(sh.work.size)
	sh.work = saved
	if !dense {
		return false, false
	}
	offs := map[uint32][]uint32{}
	for i := range sh.Slots.Len() {
		sl := sh.Slots.At(i)
		switch sl.State() {
		case store.StateFree, store.StateExpired:
			continue
		case store.StateLive:
		default:
			t.Fatalf("dense with slot %d in state %d", i, sl.State())
		}
		if sl.Size+uint32(sh.Overhead()) != ext {
			t.Fatalf("dense with slot %d of extent %d, not %d", i, sl.Size+uint32(sh.Overhead()), ext)
		}
		offs[sl.Arena()] = append(offs[sl.Arena()], sl.Off)
	}
	for ai, a := range sh.Arenas.List() {
		if a == nil {
			continue
		}
		o := offs[uint32(ai)]
		slices.Sort(o)
		for j, off := range o {
			if off != uint32(j)*ext {
				t.Fatalf("dense, but arena %d holds its entry %d at %d, not %d", ai, j, off, uint32(j)*ext)
			}
		}
		if len(o)*int(ext) != a.Used {
			t.Fatalf("dense, but arena %d holds %d entries of %d bytes below used %d", ai, len(o), ext, a.Used)
		}
		end := len(a.Mem)
		if a == sh.Arenas.Cur() {
			end = a.Top
		}
		if len(o) > 0 && end != a.Bytes {
			partial = true
		}
	}
	return dense, partial
}

// TestShuffleDenseWorkload drives one shard through a random mix of
// allocations (mostly of one size), frees, expiries, borrows across a
// Shuffle, moving Returns and Shuffles, some with mmap or munmap failing,
// under each cipher and a few arena sizes. Before every Shuffle it checks
// that when gather takes the dense path the entries really do tile their
// arenas; after every Shuffle, the invariants (no stale byte anywhere
// mapped) and, now and then, every entry's value.
func TestShuffleDenseWorkload(t *testing.T) {
	type cfg struct {
		ciph   Cipher
		arena  int
		size   int
		strict bool
	}
	var cases []cfg
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		for _, arena := range []int{4096, 12288, 65536} {
			size := 40
			if c != AES256CTR {
				size = 24 // 40 bytes with the tag
			}
			cases = append(cases, cfg{c, arena, size, false})
		}
	}
	cases = append(cases, cfg{AES256CTR, 4096, 112, false}, cfg{AES256GCM, 4096, 96, false}, cfg{AES256CTR, 4096, 8, false},
		cfg{AES256CTR, 4096, 40, true}, cfg{AES256GCM, 8192, 48, true})
	var dense, partial, shuffles atomic.Int64
	t.Cleanup(func() { osmem.SetFault(nil); osmem.SetLockFault(nil) })
	for ci, c := range cases {
		t.Run(fmt.Sprintf("%v/arena=%d/size=%d/strict=%v", c.ciph, c.arena, c.size, c.strict), func(t *testing.T) {
			clk := newTestClock(time.Unix(1_000_000, 0))
			mode := LockBestEffort
			if c.strict {
				mode = LockStrict
			}
			s := newOrSkip(t, WithShards(1), WithArenaSize(c.arena), WithCipher(c.ciph), withClock(clk), WithLockMode(mode))
			rng := mrand.New(mrand.NewPCG(uint64(ci), 7))
			m := model{}
			var hs, expired, odd []Handle
			pick := func() (int, Handle) {
				i := rng.IntN(len(hs))
				return i, hs[i]
			}
			drop := func(i int) { hs = slices.Delete(hs, i, i+1) }
			for op := range 1500 {
				switch x := rng.IntN(100); {
				case x < 45 || len(hs) < 20:
					hs = append(hs, allocPattern(t, s, m, c.size, op))
				case x < 48:
					// Another size, freed again soon, which can leave
					// alignment padding or a hole of its size behind.
					odd = append(odd, allocPattern(t, s, m, c.size+8+rng.IntN(3)*8, op))
				case x < 52 && len(odd) > 0:
					for _, h := range odd {
						if err := s.Free(h); err != nil {
							t.Fatal(err)
						}
						delete(m, h)
					}
					odd = odd[:0]
				case x < 70:
					i, h := pick()
					if err := s.Free(h); err != nil {
						t.Fatal(err)
					}
					delete(m, h)
					drop(i)
				case x < 73:
					i, h := pick()
					if err := s.SetExpiry(h, clk.time().Add(time.Second)); err != nil {
						t.Fatal(err)
					}
					clk.advance(2 * time.Second)
					delete(m, h)
					drop(i)
					expired = append(expired, h)
				case x < 75 && len(expired) > 0:
					for _, h := range expired {
						if err := s.Free(h); err != nil {
							t.Fatal(err)
						}
					}
					expired = expired[:0]
				case x < 82:
					// A moving Return, which leaves a hole where the entry was.
					s.SetShuffleOnBorrowReturn(rng.IntN(2) == 0)
					_, h := pick()
					if _, err := RentSlice[byte](s, h); err != nil {
						t.Fatal(err)
					}
					if err := s.Return(h); err != nil {
						t.Fatal(err)
					}
					s.SetShuffleOnBorrowReturn(false)
				default:
					var borrowed []Handle
					if rng.IntN(8) == 0 {
						_, h := pick()
						if _, err := ViewSlice[byte](s, h); err != nil {
							t.Fatal(err)
						}
						borrowed = append(borrowed, h)
					}
					d, p := denseProbe(t, s, 0)
					var calls atomic.Int64
					switch f := rng.IntN(10); f {
					case 0, 1:
						// Fail the f-th mmap (the first fresh arena, or
						// past it), or every munmap.
						osmem.SetFault(func(o osmem.Op) error {
							if o == osmem.OpMap && calls.Add(1)-1 == int64(f) {
								return osmem.ErrInjected
							}
							return nil
						})
					case 2:
						osmem.SetFault(func(o osmem.Op) error {
							if o == osmem.OpUnmap {
								return osmem.ErrInjected
							}
							return nil
						})
					case 3:
						// The memory-lock limit, met by the first fresh
						// arena: an error under LockStrict, counted
						// otherwise.
						osmem.SetLockFault(func(int) error {
							if calls.Add(1) == 1 {
								return osmem.ErrInjected
							}
							return nil
						})
					}
					err := s.Shuffle()
					osmem.SetFault(nil)
					osmem.SetLockFault(nil)
					if err != nil && !errors.Is(err, osmem.ErrInjected) {
						t.Fatalf("Shuffle: %v", err)
					}
					mustCheck(t, s)
					shuffles.Add(1)
					if d {
						dense.Add(1)
						if p {
							partial.Add(1)
						}
					}
					for _, h := range borrowed {
						if err := s.ReturnView(h); err != nil {
							t.Fatal(err)
						}
					}
					if rng.IntN(4) == 0 {
						verifyModel(t, s, m)
					}
				}
			}
			for _, h := range expired {
				if err := s.Free(h); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			verifyModel(t, s, m)
		})
	}
	t.Logf("%d shuffles, %d dense, %d of them emptying some arena entry by entry", shuffles.Load(), dense.Load(), partial.Load())
	if dense.Load() == 0 || partial.Load() == 0 || dense.Load() == shuffles.Load() {
		t.Fatalf("the workload does not cover both paths: %d shuffles, %d dense, %d partial", shuffles.Load(), dense.Load(), partial.Load())
	}
}

// TestShuffleDenseUnmapFailsPartial is TestShuffleUnmapFails for arenas the
// dense path empties entry by entry (their tail, past the last whole
// place, is free space, so they are not vacated whole): with every munmap
// refused, each emptied arena stays mapped, and must be all zeros and all
// free space; the next Shuffle releases them.
func TestShuffleDenseUnmapFailsPartial(t *testing.T) {
	// The old arenas and the fresh ones locked at once: an unlocked shard
	// unmaps what it empties at once, not handed over.
	needLockRoom(t, 1<<20)
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c))
			m := model{}
			// 48-byte extents: 85 to a 4 KiB arena, 16 bytes left over,
			// which become free space when the next arena is mapped.
			size := 48 - s.shards[0].Overhead()
			for i := range 600 {
				allocPattern(t, s, m, size, i)
			}
			if d, p := denseProbe(t, s, 0); !d || !p {
				t.Fatalf("dense %v, some arena emptied entry by entry %v: want both", d, p)
			}
			osmem.SetFault(func(o osmem.Op) error {
				if o == osmem.OpUnmap {
					return osmem.ErrInjected
				}
				return nil
			})
			t.Cleanup(func() { osmem.SetFault(nil) })
			if err := s.Shuffle(); err != nil && !errors.Is(err, osmem.ErrInjected) {
				t.Fatal(err)
			}
			osmem.SetFault(nil)
			mustCheck(t, s)
			// The last arena emptied outside the moves' lists is kept for
			// the next Map, and the Shuffle's end then unmaps it: refused,
			// it waits in the Aux for the next Shuffle's Retry instead.
			waiting := s.aux.Waiting()
			if st := s.Stats(); st.Arenas+waiting < 2 {
				t.Fatalf("%d arenas mapped and %d regions waiting after every munmap failed", st.Arenas, waiting)
			}
			verifyModel(t, s, m)
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			if st := s.Stats(); st.Arenas != 1 {
				t.Fatalf("%d arenas after the retry", st.Arenas)
			}
			verifyModel(t, s, m)
		})
	}
}

// TestShuffleDenseTwoFreshArenas shuffles more than MaxArenaSize of
// entries on the dense path, so that they land in two fresh arenas (the
// division in dest), then again with the second mmap refused, so that
// only the first arena's ranks move (placed < n) before the shard's second
// try, and then with every munmap refused, where the first fresh arena,
// whose last 16 bytes are free space, is emptied entry by entry.
func TestShuffleDenseTwoFreshArenas(t *testing.T) {
	if testing.Short() {
		t.Skip("maps 34 MiB")
	}
	const size = 120 // 16 MiB holds 139,810 of them, and 16 bytes
	n := store.MaxArenaSize/size + 2000
	s := newTest(t, WithShards(1), WithLockMode(LockNone))
	m := model{}
	hs := allocN(t, s, n, size)
	// Values in a sample only: every entry is checked by the invariants.
	for i := 0; i < n; i += 997 {
		b, err := RentSlice[byte](s, hs[i])
		if err != nil {
			t.Fatal(err)
		}
		for j := range b {
			b[j] = byte(i + j)
		}
		m[hs[i]] = slices.Clone(b)
		if err := s.Return(hs[i]); err != nil {
			t.Fatal(err)
		}
	}
	verify := func() {
		t.Helper()
		for h, want := range m {
			if got := readAll(t, s, h); !slices.Equal(got, want) {
				t.Fatalf("entry %v changed", h)
			}
		}
	}
	// Round 0 lays the entries out in two fresh arenas; rounds 1, 2 and 4
	// start from that layout, dense, the first arena emptied entry by
	// entry.
	const (
		clean = iota
		noUnmap
		noSecondMap
	)
	for round, fault := range []int{clean, clean, noUnmap, clean, noSecondMap} {
		d, p := denseProbe(t, s, 0)
		var calls atomic.Int64
		switch fault {
		case noSecondMap:
			osmem.SetFault(func(o osmem.Op) error {
				if o == osmem.OpMap && calls.Add(1) == 2 {
					return osmem.ErrInjected
				}
				return nil
			})
		case noUnmap:
			osmem.SetFault(func(o osmem.Op) error {
				if o == osmem.OpUnmap {
					return osmem.ErrInjected
				}
				return nil
			})
		}
		err := s.Shuffle()
		osmem.SetFault(nil)
		if err != nil && !errors.Is(err, osmem.ErrInjected) {
			t.Fatalf("round %d: %v", round, err)
		}
		// The shard's first try placed only the first arena's ranks; its
		// second, after the pass, maps both arenas.
		if fault == noSecondMap && (err != nil || calls.Load() < 4) {
			t.Fatalf("second mmap refused: Shuffle %v after %d mmaps, want nil after a second try", err, calls.Load())
		}
		mustCheck(t, s)
		verify()
		t.Logf("round %d: dense %v, partial %v, %d arenas after", round, d, p, s.Stats().Arenas)
		// Round 3 follows the refused munmaps: the arenas they kept, empty,
		// make the shard not dense until it has released them.
		if round != 0 && round != 3 && (!d || !p) {
			t.Fatalf("round %d: dense %v, some arena emptied entry by entry %v: want both", round, d, p)
		}
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
	verify()
}

// TestShuffleDenseChecksEverySize fills an arena with no gap with entries
// of one extent but for two, of half and one and a half of it, which
// together take the place of two: the arena's counts then say dense, and
// only the entries' own sizes say otherwise. A Shuffle that moved them as
// places of one extent would cut both and the neighbours they overlap.
func TestShuffleDenseChecksEverySize(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c))
			m := model{}
			over := s.shards[0].Overhead()
			ext := 64
			allocPattern(t, s, m, ext-over, 0)
			allocPattern(t, s, m, ext/2-over, 1)
			allocPattern(t, s, m, ext*3/2-over, 2)
			for i := 3; i < 40; i++ {
				allocPattern(t, s, m, ext-over, i)
			}
			sh := &s.shards[0]
			sh.mu.Lock()
			a := sh.Arenas.Cur()
			tiled := a.Live*ext == a.Bytes && a.Bytes == a.Used
			sh.mu.Unlock()
			if !tiled {
				t.Fatal("the arena's counts do not look like one extent's tiling")
			}
			if d, _ := denseProbe(t, s, 0); d {
				t.Fatal("gather took the dense path with three sizes")
			}
			for range 3 {
				if err := s.Shuffle(); err != nil {
					t.Fatal(err)
				}
				mustCheck(t, s)
				verifyModel(t, s, m)
			}
		})
	}
}

package store

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"unsafe"
)

// TestFreeSpaceModel drives the index with random inserts and takes and
// compares it with a byte map of the same arenas after every step.
func TestFreeSpaceModel(t *testing.T) {
	const arenas, size = 3, 4096
	rng := rand.New(rand.NewPCG(1, 2))
	var f FreeSpace
	free := make([][]bool, arenas) // the model: which bytes are free
	for a := range free {
		free[a] = make([]bool, size)
	}
	type span struct{ a, off, n uint32 }
	var taken []span
	for a := range uint32(arenas) {
		f.Insert(a, 0, size)
		for i := range free[a] {
			free[a][i] = true
		}
	}
	for step := range 20000 {
		if len(taken) > 0 && rng.IntN(2) == 0 {
			k := rng.IntN(len(taken))
			s := taken[k]
			taken[k] = taken[len(taken)-1]
			taken = taken[:len(taken)-1]
			f.Insert(s.a, s.off, s.n)
			for i := s.off; i < s.off+s.n; i++ {
				free[s.a][i] = true
			}
		} else {
			n := uint32(1 + rng.IntN(300))
			align := uint32(1) << rng.IntN(5)
			a, off, ok := f.Take(n, align)
			if ok {
				if off%align != 0 {
					t.Fatalf("step %d: offset %d not aligned to %d", step, off, align)
				}
				for i := off; i < off+n; i++ {
					if !free[a][i] {
						t.Fatalf("step %d: took byte %d of arena %d, which is not free", step, i, a)
					}
					free[a][i] = false
				}
				taken = append(taken, span{a, off, n})
			} else if n+align <= longestRun(free) {
				t.Fatalf("step %d: no room for %d bytes aligned to %d with a free run of %d", step, n, align, longestRun(free))
			}
		}
		if err := f.Check(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		var want int64
		for a := range free {
			for _, b := range free[a] {
				if b {
					want++
				}
			}
		}
		if f.Bytes() != want {
			t.Fatalf("step %d: index has %d free bytes, model %d", step, f.Bytes(), want)
		}
	}
	// Everything back: each arena is one extent again.
	for _, s := range taken {
		f.Insert(s.a, s.off, s.n)
	}
	if f.Len() != arenas {
		t.Fatalf("%d extents after everything was freed, want %d", f.Len(), arenas)
	}
	for a := range uint32(arenas) {
		if n, ok := f.Remove(a, 0); !ok || n != size {
			t.Fatalf("arena %d: extent at 0 is %d bytes (%v), want %d", a, n, ok, size)
		}
	}
	if f.Len() != 0 || f.Bytes() != 0 {
		t.Fatalf("index not empty: %d extents, %d bytes", f.Len(), f.Bytes())
	}
}

func longestRun(free [][]bool) uint32 {
	best := uint32(0)
	for _, ar := range free {
		run := uint32(0)
		for _, b := range ar {
			if b {
				run++
				best = max(best, run)
			} else {
				run = 0
			}
		}
	}
	return best
}

// TestFreeSpaceFewExtentsSmall: an index of a few extents takes a few
// hundred bytes of heap, not a whole chunk of records: every shard with a
// hole had one, and 96 KiB a shard made up to 6 MiB for a Shuffler of 64
// shards however little it held.
func TestFreeSpaceFewExtentsSmall(t *testing.T) {
	const n = 64
	fs := make([]FreeSpace, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range fs {
		fs[i].Insert(0, 0, 1)
		fs[i].Insert(0, 2, 1)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(fs)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 4<<10 {
		t.Fatalf("an index of 2 extents allocated %d bytes", per)
	}
}

// BenchmarkFreeSpaceCoalesce frees a piece between two free extents and
// takes the same number of bytes back, as a Free and an Alloc of a
// Shuffler do: the free merges the three into one, and the take, aligned
// to the piece, splits the two neighbours off again, so the index keeps
// count extents, none of them touching, however long it runs. One op is
// one Insert and one Take; each looks up both neighbours of what it
// inserts, and most of the lookups of a Take's two inserts find nothing.
func BenchmarkFreeSpaceCoalesce(b *testing.B) {
	for _, count := range []int{1000, 100000, 1000000} {
		b.Run("extents="+strconv.Itoa(count)+"/size=48", func(b *testing.B) {
			// Pieces of 48 bytes at multiples of 64, each followed by a
			// free extent of 16, in arenas of 1 MiB. The free extents are
			// in a bin below the pieces', so a take looks at none of them.
			const size, period, perArena = 48, 64, 1 << 14
			var f FreeSpace
			for i := range count {
				f.Insert(uint32(i/perArena), uint32(i%perArena)*period+size, period-size)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			for b.Loop() {
				i := rng.IntN(count)
				a, off := uint32(i/perArena), uint32(i%perArena)*period
				f.Insert(a, off, size)
				ta, toff, ok := f.Take(size, period)
				if !ok || ta != a || toff != off {
					b.Fatalf("took %d bytes at %d:%d, want the piece just freed at %d:%d", size, ta, toff, a, off)
				}
			}
			if f.Len() != count {
				b.Fatalf("%d extents, want %d", f.Len(), count)
			}
		})
	}
}

// BenchmarkFreeSpaceMemory builds an index of count free extents that do
// not touch and reports the heap it holds per extent (B/extent), the part
// of it that is not the records (index-B/extent: what finds neighbours),
// and that part once all but ten extents are removed again (index-B-left).
func BenchmarkFreeSpaceMemory(b *testing.B) {
	for _, count := range []int{1000, 1000000} {
		b.Run("extents="+strconv.Itoa(count), func(b *testing.B) {
			const perArena = 1 << 14 // extents of 32 bytes, 64 apart, in arenas of 1 MiB
			at := func(i int) (uint32, uint32) { return uint32(i / perArena), uint32(i%perArena) * 64 }
			var total, index, left float64
			for b.Loop() {
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				before := ms.HeapAlloc
				f := new(FreeSpace)
				for i := range count {
					a, off := at(i)
					f.Insert(a, off, 32)
				}
				records := uint64(cap(f.ext)) * uint64(unsafe.Sizeof([]extent{}))
				for _, c := range f.ext {
					records += uint64(cap(c)) * uint64(unsafe.Sizeof(extent{}))
				}
				runtime.GC()
				runtime.ReadMemStats(&ms)
				held := ms.HeapAlloc - before
				total = float64(held) / float64(count)
				index = float64(held-records) / float64(count)
				for i := 10; i < count; i++ {
					a, off := at(i)
					if _, ok := f.Remove(a, off); !ok {
						b.Fatalf("extent %d missing", i)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&ms)
				left = float64(ms.HeapAlloc-before) - float64(records)
				runtime.KeepAlive(f)
			}
			b.ReportMetric(total, "B/extent")
			b.ReportMetric(index, "index-B/extent")
			b.ReportMetric(left, "index-B-left")
		})
	}
}

// TestFreeSpaceHashTwins: extents whose starts, or ends, hash alike to the
// bits the tables keep are told apart by their records, whichever came
// first.
func TestFreeSpaceHashTwins(t *testing.T) {
	at := func(k uint64) (uint32, uint32) { return uint32(k >> 32), uint32(k) }
	twinAt := func(k uint64) (uint32, uint32) { // one with room for an extent either side
		for d := uint64(1); ; d++ {
			a, off := at(twin(k, d))
			if off > 1<<10 && off < 1<<31 {
				return a, off
			}
		}
	}
	var f FreeSpace
	check := func(what string) {
		t.Helper()
		if err := f.Check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Starts: the twin goes in first, so a lookup of the other finds it
	// first.
	a1, o1 := uint32(2), uint32(4096)
	a2, o2 := twinAt(key(a1, o1))
	f.Insert(a2, o2, 32)
	f.Insert(a1, o1, 16)
	check("twin starts")
	// Ends: [o1-64, o1-48) ends at e1, and an extent ends at its twin.
	e1 := o1 - 48
	a3, e3 := twinAt(key(a1, e1))
	f.Insert(a3, e3-8, 8)
	f.Insert(a1, o1-64, 16)
	check("twin ends")
	if off, ok := f.EndingAt(a1, e1); !ok || off != o1-64 {
		t.Fatalf("EndingAt(%d, %d) = %d, %v; want %d", a1, e1, off, ok, o1-64)
	}
	if off, ok := f.EndingAt(a3, e3); !ok || off != e3-8 {
		t.Fatalf("EndingAt(%d, %d) = %d, %v; want %d", a3, e3, off, ok, e3-8)
	}
	// Freeing what lies between the two extents of arena a1 merges them,
	// and nothing else.
	if off, n := f.Insert(a1, e1, o1-e1); off != o1-64 || n != 80 {
		t.Fatalf("merged extent [%d,+%d), want [%d,+80)", off, n, o1-64)
	}
	check("merged")
	if _, ok := f.Remove(a1, o1); ok {
		t.Fatal("removed an extent inside a merged one")
	}
	for _, w := range []struct{ a, off, n uint32 }{{a1, o1 - 64, 80}, {a2, o2, 32}, {a3, e3 - 8, 8}} {
		if n, ok := f.Remove(w.a, w.off); !ok || n != w.n {
			t.Fatalf("Remove(%d, %d) = %d, %v; want %d", w.a, w.off, n, ok, w.n)
		}
		check("removed")
	}
	if f.Len() != 0 {
		t.Fatalf("%d extents left", f.Len())
	}
}

// TestFreeSpaceGivesBackTables: an index that held 200,000 extents and
// holds ten finds their neighbours in a few dozen slots.
func TestFreeSpaceGivesBackTables(t *testing.T) {
	var f FreeSpace
	const n = 200000
	at := func(i int) (uint32, uint32) { return uint32(i >> 14), uint32(i&(1<<14-1)) * 64 }
	for i := range n {
		a, off := at(i)
		f.Insert(a, off, 32)
	}
	big := f.starts.slotCount()
	for i := 10; i < n; i++ {
		a, off := at(i)
		if _, ok := f.Remove(a, off); !ok {
			t.Fatalf("extent %d missing", i)
		}
	}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	if s, e := f.starts.slotCount(), f.ends.slotCount(); s > 32 || e > 32 {
		t.Fatalf("10 extents in tables of %d and %d slots (%d at %d extents)", s, e, big, n)
	}
}

// TestTakeWhereBounded: TakeWhere passes over at most skipLimit extents
// that accept rules out, over every bin together. A bound per bin let one
// call look at 256 extents in each of dozens of bins, and a compaction
// step makes up to compactSlots calls: with a million entries freed in
// random order, 5,970 of the Frees, which run a step, held the shard lock
// over 500 µs (the longest 6-10 ms), against 11-34 with one bound.
func TestTakeWhereBounded(t *testing.T) {
	var f FreeSpace
	// 300 extents in each of 40 bins, every one in arena 1, which accept
	// refuses: no call can succeed, and each looks until its bound.
	off := uint32(0)
	for b := range 40 {
		n := uint32(64) << (b / 8) * uint32(8+b%8) / 8
		for range 300 {
			f.Insert(1, off, n)
			off += n + 1 // not adjacent: no coalescing
		}
	}
	calls := 0
	_, _, ok := f.TakeWhere(16, 1, func(a uint32) bool { calls++; return a != 1 })
	if ok || calls > skipLimit {
		t.Errorf("TakeWhere found %v after %d extents accept refused, want none after at most %d", ok, calls, skipLimit)
	}
	// An acceptable extent within the bound is still found: one in arena 2,
	// first in a bin above the others.
	f.Insert(2, 0, 1<<20)
	calls = 0
	if a, _, ok := f.TakeWhere(1<<19, 1, func(a uint32) bool { calls++; return a != 1 }); !ok || a != 2 {
		t.Errorf("TakeWhere(%d) found %v in arena %d, want arena 2", 1<<19, ok, a)
	}
}

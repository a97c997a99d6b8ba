package store

import "testing"

// TestCompactDrainsBesideSparseCurrent: an arena holding a few entries
// next to a current arena that is emptier still, with much bump space
// left, is drained into that space. The average fill a step compares an
// arena with once counted the current arena's empty space, so the
// nearly empty arena was always above it: Wasteful held, every Alloc and
// Free ran a step, and the step moved nothing.
func TestCompactDrainsBesideSparseCurrent(t *testing.T) {
	// 56-byte extents: 73 fill the first 4 KiB arena, 40 more go to the
	// second, which is current.
	e, idx := testShard(t, 73+40)
	if n := len(e.Arenas.List()); n != 2 {
		t.Fatalf("%d arenas, want 2", n)
	}
	free := func(k int) {
		sl := e.Slots.At(idx[k])
		e.Drop(sl, nil)
		e.Slots.Free(idx[k], sl)
		// As the root package's Free does.
		if e.Wasteful() {
			e.Compact(nil)
		}
	}
	// The current arena keeps its last entry, so its top stays, and one
	// in eight of the others.
	for k := 73; k < 73+39; k++ {
		if k%8 != 0 {
			free(k)
		}
	}
	// The full arena keeps one entry in six.
	for k := range 73 {
		if k%6 != 0 {
			free(k)
		}
	}
	for range 4 {
		e.Compact(nil)
	}
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
	if m := e.Arenas.Mapped(); m != 4096 || e.Wasteful() {
		t.Fatalf("%d entries of %d bytes: %d bytes mapped, %d free, Wasteful %v; want one arena",
			e.Counts.Live(), e.Counts.LiveBytes(), m, e.Arenas.FreeSpace().Bytes(), e.Wasteful())
	}
}

// TestFreeSpaceRecordsStay: once the first chunk of records is full, the
// index's records never move as it grows. Kept in one slice, each growth
// copied all of them, and a background step that freed the extent that
// needed one more record held its shard's lock for milliseconds (5 to
// 6.6 ms at 200,000 extents).
func TestFreeSpaceRecordsStay(t *testing.T) {
	var f FreeSpace
	const n = 100000
	var first *extent
	for i := range n {
		if i == recChunk {
			first = f.rec(0)
		}
		f.Insert(0, uint32(2*i), 1) // never touching: one record each
	}
	if f.Len() != n || f.rec(0) != first {
		t.Fatalf("%d extents; record 0 moved: %v", f.Len(), f.rec(0) != first)
	}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
}

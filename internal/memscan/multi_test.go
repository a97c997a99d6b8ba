package memscan

import (
	"bytes"
	"crypto/rand"
	"debug/elf"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"testing"
)

// zeros reports the run of zero bytes of m's data starting at addr, as a
// sparse file reports a hole: only runs of at least minRun bytes, and at
// most maxRun of them (0: no limit), so the scanner is also told about part
// of a run. m.data must not change afterwards.
func (m *fakeMemory) zeros(minRun, maxRun int) zeroFunc {
	// next[i] is the offset of the first non-zero byte at or after i.
	next := make([]int32, len(m.data)+1)
	next[len(m.data)] = int32(len(m.data))
	for i := len(m.data) - 1; i >= 0; i-- {
		next[i] = next[i+1]
		if m.data[i] != 0 {
			next[i] = int32(i)
		}
	}
	return func(addr uint64) uint64 {
		if addr < m.base || addr >= m.base+uint64(len(m.data)) {
			return 0
		}
		i := int(addr - m.base)
		n := int(next[i]) - i
		if n < minRun {
			return 0
		}
		if maxRun > 0 {
			n = min(n, maxRun)
		}
		return uint64(n)
	}
}

// scanFakeAll streams mem through a chunkScanner looking for all of ps, with
// the zero function zf (nil: none), and returns the hit offsets per
// pattern. It checks that hits come in increasing order and that the
// buffer was wiped.
func scanFakeAll(t testing.TB, ps []*Pattern, mem *fakeMemory, buf []byte, zf zeroFunc) [][]int {
	t.Helper()
	offs := make([][]int, len(ps))
	sc := &chunkScanner{
		ps:       ps,
		buf:      buf,
		pageSize: 4096,
		read:     mem.read,
		zeros:    zf,
		hit: func(i int, addr uint64) {
			off := int(addr - mem.base)
			if k := len(offs[i]); k > 0 && offs[i][k-1] >= off {
				t.Fatalf("pattern %d: hit %d after %d", i, off, offs[i][k-1])
			}
			offs[i] = append(offs[i], off)
		},
	}
	if err := sc.scanRange(mem.base, mem.base+uint64(len(mem.data))); err != nil {
		t.Fatalf("scanRange: %v", err)
	}
	if i := slices.IndexFunc(buf, func(c byte) bool { return c != 0 }); i >= 0 {
		t.Fatalf("read buffer not wiped: byte %d is %#x", i, buf[i])
	}
	return offs
}

// zeroPatterns is a set of patterns that stress zero skipping: all zeros
// (shorter than, as long as and longer than a zero line or page), zero runs
// longer than a line or a page with non-zero bytes around or at one end,
// and ordinary ones.
func zeroPatterns(r *mrand.Rand) [][]byte {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(1 + r.IntN(255))
		}
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	z := func(n int) []byte { return make([]byte, n) }
	return [][]byte{
		rnd(16),
		rnd(32),
		rnd(1),
		z(1),
		z(63),
		z(64),
		z(130),
		cat(rnd(3), z(100), rnd(2)),     // a zero run longer than a line
		cat(rnd(1), z(5000), rnd(1)),    // longer than a page
		cat(z(130), rnd(1)),             // zeros then one byte
		cat(rnd(1), z(130)),             // one byte then zeros
		cat(z(64), rnd(4), z(64)),       // zeros on both sides
		cat(rnd(8), z(8), rnd(8)),       // short inner run
		cat(z(4200), rnd(1), z(4200)),   // one byte in a sea of zeros
		cat(rnd(2), z(1), rnd(2), z(1)), // scattered zeros
	}
}

// zeroHeavy returns size bytes of random data, mostly overwritten with zero
// regions of every size and alignment, with each of pats planted several
// times: inside data, next to zero regions on either side, across the
// boundary of a zero region, and in the middle of one.
func zeroHeavy(r *mrand.Rand, size int, pats [][]byte) []byte {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.IntN(256))
	}
	for range size / 2000 {
		n := []int{1, 63, 64, 65, 128, 4095, 4096, 4097, 8192, 3 * 4096}[r.IntN(10)]
		at := r.IntN(size)
		if r.IntN(2) == 0 {
			at &^= 4095 // page aligned, as in memory
		}
		clear(data[at:min(at+n, size)])
	}
	// Find zero regions to plant next to.
	var edges []int
	for i := 1; i < size; i++ {
		if (data[i] == 0) != (data[i-1] == 0) {
			edges = append(edges, i)
		}
	}
	for _, p := range pats {
		if len(p) > size/4 {
			continue
		}
		for range 4 {
			var at int
			switch k := r.IntN(4); {
			case k == 0 || len(edges) == 0:
				at = r.IntN(size - len(p) + 1)
			case k == 1: // ending at an edge
				at = edges[r.IntN(len(edges))] - len(p)
			case k == 2: // starting at an edge
				at = edges[r.IntN(len(edges))]
			default: // straddling an edge
				at = edges[r.IntN(len(edges))] - r.IntN(len(p))
			}
			at = max(0, min(at, size-len(p)))
			copy(data[at:], p)
		}
	}
	return data
}

// TestScanAllZeroHeavy checks the multi-pattern scanner against bytes.Index
// and against one scan per pattern, on zero-heavy random data with all
// sorts of patterns planted next to and across zero regions, through
// buffers from barely bigger than the longest pattern to the real size,
// with short reads, with and without a zero function, at base addresses
// aligned and not aligned on lines and pages.
func TestScanAllZeroHeavy(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(3, 4))
	raw := zeroPatterns(r)
	allPats := make([]*Pattern, len(raw))
	for i, b := range raw {
		allPats[i] = mustPattern(t, b)
	}
	for iter := range 12 {
		size := []int{3000, 20000, 70000, readBufSize + 50000}[iter%4]
		// On the largest inputs, long all-zero patterns would be verified
		// at nearly every offset, which the smaller ones prove well enough.
		var ps []*Pattern
		var pats [][]byte
		maxLen, sumLen := 0, 0
		for i, b := range raw {
			if size > 100000 && len(b) > 1 && !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
				continue
			}
			ps, pats = append(ps, allPats[i]), append(pats, b)
			maxLen = max(maxLen, len(b))
			sumLen += len(b)
		}
		data := zeroHeavy(r, size, raw)
		want := make([][]int, len(pats))
		for i, b := range pats {
			want[i] = naiveMatches(data, b)
		}
		base := []uint64{0x10000, 0x10000 + 5, 0x10000 + 64*3 + 17, 1<<40 - 4000}[iter%4]
		// Each read brings step new bytes behind maxLen-1 old ones, all
		// searched again: keep the work bounded.
		step := []int{1, 2, 101, 2 * maxLen, readBufSize}[iter%5]
		step = max(step, size*sumLen>>23)
		bufSize := min(maxLen-1+step, readBufSize)
		maxRead := []int{0, 0, 777, 4096}[r.IntN(4)]
		zfs := map[string]zeroFunc{"none": nil}
		mem := &fakeMemory{base: base, data: data, maxRead: maxRead}
		zfs["exact"] = mem.zeros(1, 0)
		zfs["partial"] = mem.zeros(64, 5000)
		for name, zf := range zfs {
			mem.calls = 0
			got := scanFakeAll(t, ps, mem, make([]byte, bufSize), zf)
			for i := range pats {
				if !slices.Equal(got[i], want[i]) {
					t.Fatalf("iter %d (size %d, base %#x, buf %d, maxRead %d, zeros %s): pattern %d (len %d): %d hits %v\nwant %d %v",
						iter, size, base, bufSize, maxRead, name, i, len(pats[i]), len(got[i]), head(got[i]), len(want[i]), head(want[i]))
				}
			}
		}
		// One pattern at a time, as ScanCore and ScanProcess do it, for the
		// ordinary one and two with zero runs (to keep it quick).
		for _, i := range []int{0, len(ps) - 4, len(ps) - 3} {
			one := scanFakeAll(t, ps[i:i+1], &fakeMemory{base: base, data: data, maxRead: maxRead}, make([]byte, bufSize), nil)
			if !slices.Equal(one[0], want[i]) {
				t.Fatalf("iter %d: pattern %d alone: %v, want %v", iter, i, head(one[0]), head(want[i]))
			}
		}
	}
}

func head(s []int) []int { return s[:min(len(s), 20)] }

// TestScanAllNextToZeroBlocks plants a pattern at every offset around the
// edges of a zero page and of a zero line, in data that is otherwise
// non-zero (so only the planted copy matches), and across a chunk boundary.
func TestScanAllNextToZeroBlocks(t *testing.T) {
	t.Parallel()
	fill := func(n int) []byte { return bytes.Repeat([]byte{0xa5}, n) }
	pats := [][]byte{
		[]byte("0123456789abcdef"),
		append(append([]byte{7}, make([]byte, 100)...), 9), // zero run longer than a line
		append(make([]byte, 70), 1),                        // leading zeros
		append([]byte{1}, make([]byte, 70)...),             // trailing zeros
	}
	for _, pat := range pats {
		p := mustPattern(t, pat)
		n := len(pat)
		for _, zone := range []struct{ at, n int }{{8192, 4096}, {8192, 64}, {8192 + 64, 128}} {
			for pos := zone.at - n - 2; pos <= zone.at+zone.n+2; pos++ {
				if pos > zone.at+2 && pos < zone.at+zone.n-n-2 {
					continue // deep inside the zone: covered by other tests
				}
				data := fill(4 * 4096)
				clear(data[zone.at : zone.at+zone.n])
				copy(data[pos:], pat)
				want := naiveMatches(data, pat)
				for _, bufSize := range []int{n + 40, 1 << 16} {
					mem := &fakeMemory{base: 0x40000, data: data}
					for _, zf := range []zeroFunc{nil, mem.zeros(1, 0)} {
						got := scanFakeAll(t, []*Pattern{p}, mem, make([]byte, bufSize), zf)
						if !slices.Equal(got[0], want) {
							t.Fatalf("pattern len %d at %d, zeros [%d,%d), buf %d: hits %v, want %v", n, pos, zone.at, zone.at+zone.n, bufSize, got[0], want)
						}
					}
				}
			}
		}
	}
}

// TestScanAllChunkBoundaries plants patterns of different lengths across
// the boundaries of full-size chunks, with zeros on both sides: a short
// pattern that lies in the overlap kept from the previous read must be
// reported once, and a long one straddling the boundary must be found.
func TestScanAllChunkBoundaries(t *testing.T) {
	t.Parallel()
	buf := testBuffer(t)
	short := []byte("short-secret")
	long := bytes.Repeat([]byte("LONG"), 300) // overlap 1199 bytes
	ps := []*Pattern{mustPattern(t, short), mustPattern(t, long)}
	keep := len(long) - 1
	second := readBufSize + readBufSize - keep // end of the second read
	data := make([]byte, 3*readBufSize)
	for _, pos := range []int{
		0, readBufSize - len(short), readBufSize - len(short) + 1, readBufSize - keep,
		readBufSize - keep - 1, readBufSize - 1, second - len(short), second - 3, 3*readBufSize - len(long),
	} {
		for k, pat := range [][]byte{short, long} {
			if pos+len(pat) > len(data) {
				continue
			}
			clear(data)
			copy(data[pos:], pat)
			mem := &fakeMemory{base: 1 << 32, data: data}
			for _, zf := range []zeroFunc{nil, mem.zeros(1, 0), mem.zeros(4096, 0)} {
				got := scanFakeAll(t, ps, mem, buf, zf)
				if !slices.Equal(got[k], []int{pos}) || len(got[1-k]) != 0 {
					t.Errorf("pattern %d planted at %d: hits %v", k, pos, got)
				}
			}
		}
	}
}

// TestScanAllZeroPatternInZeros is the case skipping must not break: a
// pattern of zeros in zero memory matches everywhere, whatever else is
// looked for at the same time and whatever the zero function says.
func TestScanAllZeroPatternInZeros(t *testing.T) {
	t.Parallel()
	data := make([]byte, 2*4096+200)
	data[5000] = 1
	for _, n := range []int{1, 16, 64, 4096, 4097} {
		zp := make([]byte, n)
		ps := []*Pattern{mustPattern(t, []byte("not here")), mustPattern(t, zp)}
		want := naiveMatches(data, zp)
		mem := &fakeMemory{base: 0x1000, data: data}
		for _, zf := range []zeroFunc{nil, mem.zeros(1, 0), mem.zeros(1, 100)} {
			for _, bufSize := range []int{max(n, 8) + 1 + n/64, 2*max(n, 8) + 64, 1 << 16} {
				got := scanFakeAll(t, ps, mem, make([]byte, bufSize), zf)
				if len(got[0]) != 0 || !slices.Equal(got[1], want) {
					t.Fatalf("zero pattern of %d bytes, buf %d: %d hits, want %d", n, bufSize, len(got[1]), len(want))
				}
			}
		}
	}
}

// TestScanAllSkipsHoles checks that a hole the zero function vouches for is
// not read when no pattern is all zeros, and is when one is.
func TestScanAllSkipsHoles(t *testing.T) {
	t.Parallel()
	data := make([]byte, 64<<20)
	copy(data[100:], "before")
	copy(data[len(data)-100:], "after!")
	copy(data[len(data)/2-3:], "middle")
	pats := []*Pattern{mustPattern(t, []byte("before")), mustPattern(t, []byte("middle")), mustPattern(t, []byte("after!"))}
	mem := &fakeMemory{base: 1 << 30, data: data}
	got := scanFakeAll(t, pats, mem, make([]byte, 1<<16), mem.zeros(1, 0))
	if want := [][]int{{100}, {len(data)/2 - 3}, {len(data) - 100}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("hits %v, want %v", got, want)
	}
	if mem.calls > 10 {
		t.Errorf("%d reads of 64 MiB that are nearly all hole", mem.calls)
	}

	// With an all-zero pattern the holes are scanned, not skipped.
	small := &fakeMemory{base: 1 << 30, data: data[:1<<20]}
	got = scanFakeAll(t, []*Pattern{pats[0], mustPattern(t, make([]byte, 8))}, small, make([]byte, 1<<16), small.zeros(1, 0))
	if want := len(small.data) - 7 - 6 - 7; len(got[0]) != 1 || len(got[1]) != want {
		t.Fatalf("with a zero pattern: %d and %d hits, want 1 and %d", len(got[0]), len(got[1]), want)
	}
}

func TestZeroRuns(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(5, 6))
	for iter := range 300 {
		win := make([]byte, r.IntN(20000))
		for range r.IntN(30) {
			at := r.IntN(len(win) + 1)
			end := min(len(win), at+r.IntN(3000))
			for i := at; i < end; i++ {
				win[i] = byte(r.IntN(256))
			}
		}
		if iter%3 == 0 && len(win) > 0 {
			win[r.IntN(len(win))] = 1 // a lone byte
		}
		base := r.Uint64() &^ uint64(r.IntN(2)*4095)
		runs := zeroRuns(win, base, nil)
		// Brute force: a line is whole when it lies in win and starts on
		// an address multiple of 64; runs are maximal runs of zero lines.
		var want []zeroRun
		start := -1
		o := int(-base & 63)
		for ; o+64 <= len(win); o += 64 {
			zero := !slices.ContainsFunc(win[o:o+64], func(c byte) bool { return c != 0 })
			if zero && start < 0 {
				start = o
			} else if !zero && start >= 0 {
				want = append(want, zeroRun{start, o})
				start = -1
			}
		}
		if start >= 0 {
			want = append(want, zeroRun{start, o})
		}
		if !slices.Equal(runs, want) {
			t.Fatalf("iter %d, len %d, base %#x: runs %v, want %v", iter, len(win), base, runs, want)
		}
	}
}

// TestPatternZeroFlag checks the one bit kept in the clear.
func TestPatternZeroFlag(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		b    []byte
		zero bool
	}{
		{[]byte{0}, true},
		{make([]byte, 1000), true},
		{[]byte{0, 0, 1}, false},
		{[]byte{1}, false},
		{append(make([]byte, 999), 0x80), false},
	} {
		if p := mustPattern(t, tt.b); p.zero != tt.zero {
			t.Errorf("%x...: zero = %v", tt.b[:min(len(tt.b), 4)], p.zero)
		}
	}
}

// TestPadRanges drives padRanges as ScanProcessAll does, over fake memory
// with populated runs, and checks every pattern's hits against a scan of
// its own ranges: what ScanProcess reads for it. A short pattern planted in
// untouched memory within reach of the long pattern's widening must not be
// reported.
func TestPadRanges(t *testing.T) {
	t.Parallel()
	const lo, hi = 0x100000, 0x100000 + 16*4096
	data := bytes.Repeat([]byte{0xee}, hi-lo)
	short, long := []byte("sh0rt"), bytes.Repeat([]byte{'L'}, 3000)
	plant := func(at int, b []byte) { copy(data[at-lo:], b) }
	runs := []span{{lo + 4096, lo + 2*4096}, {lo + 5*4096, lo + 6*4096}, {lo + 7*4096, lo + 9*4096}}
	plant(lo+4096-2, short)      // straddles into a run: found
	plant(lo+4096-100, short)    // untouched, within the long pad: not found
	plant(lo+2*4096+50, short)   // untouched, past the end of a run: not found
	plant(lo+2*4096-3, short)    // straddles out of a run: found
	plant(lo+6*4096+100, short)  // in the gap of one page between runs: not found
	plant(lo+5*4096-2000, long)  // straddles into a run: found
	plant(lo+9*4096+1000, long)  // starts after the last run: not found
	plant(lo+7*4096-1500, long)  // across the gap between runs 2 and 3
	plant(lo+12*4096, []byte{0}) // far away
	ps := []*Pattern{mustPattern(t, short), mustPattern(t, long), mustPattern(t, []byte{0xee, 0xee})}
	skip := span{lo + 8*4096, lo + 8*4096 + 512}

	rs := newPadRanges(ps, skip)
	mem := &fakeMemory{base: lo, data: data}
	got := make([][]uint64, len(ps))
	sc := &chunkScanner{ps: ps, buf: make([]byte, 8192), pageSize: 4096, read: mem.read, hit: func(i int, addr uint64) {
		if rs.keep(ps[i].Len(), addr) {
			got[i] = append(got[i], addr)
		}
	}}
	for _, r := range rs.block(lo, hi, runs) {
		if err := sc.scanRange(r.start, r.end); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range ps {
		var want []uint64
		one := &chunkScanner{ps: ps[i : i+1], buf: make([]byte, 8192), pageSize: 4096, read: mem.read, hit: func(_ int, addr uint64) {
			want = append(want, addr)
		}}
		for _, r := range newPadRanges(ps[i:i+1], skip).block(lo, hi, runs) {
			if err := one.scanRange(r.start, r.end); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got[i], want) {
			t.Errorf("pattern %d (len %d): hits %#x\nwant %#x", i, p.Len(), got[i], want)
		}
	}
	if want := []uint64{lo + 4096 - 2, lo + 2*4096 - 3}; !slices.Equal(got[0], want) {
		t.Errorf("short pattern: hits %#x, want %#x", got[0], want)
	}
	if want := []uint64{lo + 5*4096 - 2000, lo + 7*4096 - 1500}; !slices.Equal(got[1], want) {
		t.Errorf("long pattern: hits %#x, want %#x", got[1], want)
	}
}

// FuzzMatchAll checks the multi-pattern scanner against bytes.Index: the
// fuzzer's patterns (cut from one input) are searched for together in data
// with zero regions inserted, streamed through a buffer barely bigger than
// the longest pattern and told about zero runs of at least zeroMin bytes.
func FuzzMatchAll(f *testing.F) {
	f.Add([]byte("the secret is secretsecret"), []byte("secret\x00cret\x00\x00\x00"), uint8(3), uint16(0x1234), uint8(1))
	f.Add(make([]byte, 300), []byte("\x00\x00\x00\x00a\x00\x00"), uint8(0), uint16(0xffff), uint8(0))
	f.Add(bytes.Repeat([]byte("ab\x00"), 100), []byte("ab\x00ab\x00b\x00\x00a"), uint8(7), uint16(99), uint8(64))
	f.Fuzz(func(t *testing.T, data, cut []byte, extra uint8, zeroSeed uint16, zeroMin uint8) {
		data = slices.Clone(data)
		// Patterns: the pieces of cut between NUL-NUL-NUL separators,
		// plus cut itself, so zeros appear inside and at the ends of them.
		pieces := bytes.Split(cut, []byte{0, 0, 0})
		pieces = append(pieces, cut)
		var raw [][]byte
		var ps []*Pattern
		maxLen := 0
		for _, b := range pieces {
			if len(b) == 0 || len(b) > 2048 || len(raw) == 8 {
				continue
			}
			raw = append(raw, b)
			ps = append(ps, mustPattern(t, b))
			maxLen = max(maxLen, len(b))
		}
		if len(ps) == 0 || len(data) > 1<<16 {
			return
		}
		// Zero regions, at places the seed picks: long enough to hold
		// whole zero lines, and sometimes a page.
		r := mrand.New(mrand.NewPCG(uint64(zeroSeed), uint64(len(data))))
		for range int(zeroSeed % 5) {
			n := []int{64, 130, 200, 4096 + 70}[r.IntN(4)]
			at := r.IntN(len(data) + 1)
			zs := make([]byte, n)
			data = append(data[:at:at], append(zs, data[at:]...)...)
		}
		for _, b := range raw {
			if len(b) <= len(data) {
				at := r.IntN(len(data) - len(b) + 1)
				copy(data[at:], b)
			}
		}
		step := 1 + int(extra%64)
		if work := len(data) / step * maxLen * len(ps); work > 1<<23 {
			step = len(data)*maxLen*len(ps)>>23 + 1
		}
		mem := &fakeMemory{base: 0x1000 + uint64(extra), data: data}
		var zf zeroFunc
		if zeroMin > 0 {
			zf = mem.zeros(int(zeroMin), 0)
		}
		got := scanFakeAll(t, ps, mem, make([]byte, maxLen-1+step), zf)
		whole := scanFakeAll(t, ps, mem, make([]byte, max(readBufSize/16, maxLen+1)), zf)
		for i, b := range raw {
			want := naiveMatches(data, b)
			if !slices.Equal(got[i], want) {
				t.Fatalf("pattern %d (%x): streamed hits %v, want %v", i, b, got[i], want)
			}
			if !slices.Equal(whole[i], want) {
				t.Fatalf("pattern %d (%x): hits %v, want %v", i, b, whole[i], want)
			}
		}
	})
}

// TestScanCoreAll writes a zero-heavy core with segments of various sizes
// and checks ScanCoreAll against ScanCore for each pattern, and both
// against bytes.Index over each block of contiguous segments.
func TestScanCoreAll(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(7, 8))
	raw := zeroPatterns(r)
	// All-zero patterns match a million times in these zeros: the
	// fake-memory tests cover them.
	raw = slices.DeleteFunc(raw, func(b []byte) bool { return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) })
	var ps []*Pattern
	for _, b := range raw {
		ps = append(ps, mustPattern(t, b))
	}
	segs := []testSegment{
		{vaddr: 0x400000, flags: elf.PF_R | elf.PF_X, data: zeroHeavy(r, 0x5000, raw)},
		{vaddr: 0x405000, flags: elf.PF_R, data: zeroHeavy(r, 0x3000, raw)}, // contiguous with the first
		{vaddr: 0xc000000000, flags: elf.PF_R | elf.PF_W, data: make([]byte, 4<<20)},
		{vaddr: 0x7f0000000000, flags: elf.PF_R | elf.PF_W, data: zeroHeavy(r, 3*readBufSize+0x1000, raw)},
	}
	copy(segs[2].data[3<<20:], raw[0])
	path := writeCore(t, elf.ET_CORE, segs, nil)
	all, err := ScanCoreAll(path, ps)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(ps) {
		t.Fatalf("%d results for %d patterns", len(all), len(ps))
	}
	block1 := append(slices.Clone(segs[0].data), segs[1].data...)
	for i, p := range ps {
		one, err := ScanCore(path, p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(all[i], one) {
			t.Fatalf("pattern %d: ScanCoreAll %d hits, ScanCore %d", i, len(all[i]), len(one))
		}
	}
	// Against bytes.Index, for the patterns kept.
	for k, b := range raw {
		var want []uint64
		for _, blk := range []struct {
			at   uint64
			data []byte
		}{{0x400000, block1}, {0xc000000000, segs[2].data}, {0x7f0000000000, segs[3].data}} {
			for _, off := range naiveMatches(blk.data, b) {
				want = append(want, blk.at+uint64(off))
			}
		}
		var got []uint64
		for _, h := range all[k] {
			got = append(got, h.Addr)
			if !h.Mapping.contains(h.Addr) {
				t.Fatalf("hit %#x in mapping %#x-%#x", h.Addr, h.Mapping.Start, h.Mapping.End)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pattern %d (len %d): %d hits, want %d", k, len(b), len(got), len(want))
		}
	}
}

// BenchmarkScanCoreAllZeroHeavy measures ScanCoreAll with 26 patterns (as
// TestForensics has) over 256 MiB of segments that are 99.5% zero pages,
// the shape of a gcore dump of a Go process.
func BenchmarkScanCoreAllZeroHeavy(b *testing.B) {
	const size = 256 << 20
	data := make([]byte, size)
	r := mrand.New(mrand.NewPCG(9, 10))
	for range size / 4096 / 200 { // 0.5% of the pages hold data
		at := r.IntN(size/4096) * 4096
		for i := at; i < at+4096; i += 8 {
			if r.IntN(3) > 0 {
				data[i] = byte(r.IntN(256))
			}
		}
	}
	path := writeCore(b, elf.ET_CORE, []testSegment{{vaddr: 0xc000000000, flags: elf.PF_R | elf.PF_W, data: data}}, nil)
	var ps []*Pattern
	for i := range 26 {
		n := 16
		if i < 9 {
			n = 32
		}
		pat := make([]byte, n)
		rand.Read(pat)
		ps = append(ps, mustPattern(b, pat))
	}
	b.SetBytes(size)
	for b.Loop() {
		if _, err := ScanCoreAll(path, ps); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIsZeroPage sets each byte of a page in turn: one non-zero byte
// anywhere makes the page non-zero.
func TestIsZeroPage(t *testing.T) {
	t.Parallel()
	page := make([]byte, zeroPageSize)
	if !isZeroPage(page) {
		t.Fatal("a zero page is not zero")
	}
	for i := range page {
		page[i] = byte(i%255 + 1)
		if isZeroPage(page) {
			t.Fatalf("a page with byte %d set is zero", i)
		}
		page[i] = 0
	}
}

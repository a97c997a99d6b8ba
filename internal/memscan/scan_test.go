package memscan

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// TestMoveDown checks moveDown against the built-in copy for every length
// up to 40 and every distance up to 20 between source and destination,
// overlapping or not.
func TestMoveDown(t *testing.T) {
	for n := 0; n <= 40; n++ {
		for d := 0; d <= 20; d++ {
			buf := make([]byte, n+d)
			for i := range buf {
				buf[i] = byte(i + 1)
			}
			want := slices.Clone(buf)
			copy(want, want[d:])
			moveDown(buf, buf[d:])
			if !bytes.Equal(buf, want) {
				t.Fatalf("length %d, distance %d: got %v, want %v", n, d, buf, want)
			}
		}
	}
}

// fakeMemory serves data as memory starting at base, with unreadable holes,
// returning at most maxRead bytes per call (0: no limit) so short reads are
// exercised too.
type fakeMemory struct {
	base    uint64
	data    []byte
	holes   []span
	maxRead int
	calls   int
}

func (m *fakeMemory) read(dst []byte, addr uint64) (int, error) {
	m.calls++
	if addr < m.base || addr >= m.base+uint64(len(m.data)) {
		return 0, errEnd
	}
	limit := m.base + uint64(len(m.data))
	for _, h := range m.holes {
		if h.start <= addr && addr < h.end {
			return 0, errUnreadable
		}
		if addr < h.start {
			limit = min(limit, h.start)
		}
	}
	n := min(uint64(len(dst)), limit-addr)
	if m.maxRead > 0 {
		n = min(n, uint64(m.maxRead))
	}
	return copy(dst, m.data[addr-m.base:addr-m.base+n]), nil
}

// streamMatches runs data through a chunkScanner with a bufSize-byte buffer
// and returns the offsets of the hits; it checks that the buffer was wiped.
func streamMatches(t testing.TB, p *Pattern, data []byte, base uint64, bufSize int) []int {
	t.Helper()
	return scanFake(t, p, &fakeMemory{base: base, data: data}, make([]byte, bufSize))
}

func scanFake(t testing.TB, p *Pattern, mem *fakeMemory, buf []byte) []int {
	t.Helper()
	var offs []int
	sc := &chunkScanner{
		ps:       []*Pattern{p},
		buf:      buf,
		pageSize: 4096,
		read:     mem.read,
		hit:      func(_ int, addr uint64) { offs = append(offs, int(addr-mem.base)) },
	}
	if err := sc.scanRange(mem.base, mem.base+uint64(len(mem.data))); err != nil {
		t.Fatalf("scanRange: %v", err)
	}
	if i := slices.IndexFunc(buf, func(c byte) bool { return c != 0 }); i >= 0 {
		t.Fatalf("read buffer not wiped: byte %d is %#x", i, buf[i])
	}
	return offs
}

// TestChunkStraddleEverySplit moves a pattern across every position of a
// small range scanned with buffers barely bigger than the pattern, so it
// straddles every possible chunk boundary, with and without short reads.
func TestChunkStraddleEverySplit(t *testing.T) {
	t.Parallel()
	pat := []byte("0123456789abcdef")
	p := mustPattern(t, pat)
	for _, bufSize := range []int{len(pat), len(pat) + 1, 23, 64} {
		for _, maxRead := range []int{0, 1, 5} {
			for pos := 0; pos+len(pat) <= 200; pos++ {
				data := bytes.Repeat([]byte{'x'}, 200)
				copy(data[pos:], pat)
				mem := &fakeMemory{base: 0x7000, data: data, maxRead: maxRead}
				got := scanFake(t, p, mem, make([]byte, bufSize))
				if !slices.Equal(got, []int{pos}) {
					t.Fatalf("buf %d, maxRead %d, pattern at %d: hits %v", bufSize, maxRead, pos, got)
				}
			}
		}
	}
}

// testBuffer maps a read buffer of the size the scanners use, released when
// the test ends; it skips where there is none.
func testBuffer(t *testing.T) []byte {
	t.Helper()
	buf, err := mapBuffer(readBufSize)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmapBuffer(buf); err != nil {
			t.Error(err)
		}
	})
	return buf
}

// TestChunkStraddleRealBuffer plants a pattern across the boundaries of
// full-size chunks read into the off-heap buffer.
func TestChunkStraddleRealBuffer(t *testing.T) {
	t.Parallel()
	buf := testBuffer(t)
	pat := []byte("straddling-secret")
	n := len(pat)
	// The first chunk covers [0, readBufSize); every later one adds
	// readBufSize-(n-1) new bytes behind the overlap.
	second := readBufSize + readBufSize - (n - 1)
	positions := []int{0, readBufSize - n, readBufSize - n + 1, readBufSize - 1 - n/2, readBufSize - 1, second - 3, 3*readBufSize - n}
	p := mustPattern(t, pat)
	data := make([]byte, 3*readBufSize)
	for _, pos := range positions {
		clear(data)
		copy(data[pos:], pat)
		got := scanFake(t, p, &fakeMemory{base: 1 << 40, data: data}, buf)
		if !slices.Equal(got, []int{pos}) {
			t.Errorf("planted at %d: hits %v", pos, got)
		}
	}
}

func TestScanRangeUnreadable(t *testing.T) {
	t.Parallel()
	pat := []byte("PATTERN!")
	data := make([]byte, 4*4096)
	plant := func(at int) { copy(data[at:], pat) }
	plant(100)        // page 0
	plant(4096 - 4)   // straddles into the hole at page 1: unreadable, so unseen
	plant(4096 + 10)  // inside the hole
	plant(2*4096 + 0) // first bytes after the hole
	plant(3*4096 - 4) // straddles pages 2 and 3, both readable
	plant(4*4096 - 8) // the very end
	mem := &fakeMemory{base: 0x10000, data: data, holes: []span{{0x10000 + 4096, 0x10000 + 2*4096}}, maxRead: 1000}
	got := scanFake(t, mustPattern(t, pat), mem, make([]byte, 64))
	want := []int{100, 2 * 4096, 3*4096 - 4, 4*4096 - 8}
	if !slices.Equal(got, want) {
		t.Fatalf("hits %v, want %v", got, want)
	}
}

func TestScanRangeReaderErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	// as returns n bytes of 'a' (fewer if dst is shorter) and err.
	as := func(n int, err error) readFunc {
		return func(dst []byte, _ uint64) (int, error) {
			k := min(n, len(dst))
			copy(dst, bytes.Repeat([]byte{'a'}, k))
			return k, err
		}
	}
	tests := []struct {
		name    string
		read    readFunc
		hits    int
		wantErr error // errAny: any non-nil error
	}{
		{"end of data", as(4, errEnd), 3, nil},
		{"hard error after data", as(4, boom), 3, boom},
		{"no progress", as(0, nil), 0, io.ErrNoProgress},
		{"more than asked", func(dst []byte, _ uint64) (int, error) { return len(dst) + 1, nil }, 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := 0
			sc := &chunkScanner{ps: []*Pattern{mustPattern(t, []byte("aa"))}, buf: make([]byte, 8), pageSize: 4096, read: tt.read, hit: func(int, uint64) { hits++ }}
			err := sc.scanRange(0, 100)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatal("scanRange: no error")
				}
			case tt.wantErr == nil && err != nil, !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if hits != tt.hits {
				t.Fatalf("hits = %d, want %d", hits, tt.hits)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestCoalescer(t *testing.T) {
	t.Parallel()
	type block struct {
		lo, hi uint64
		runs   []span
	}
	tests := []struct {
		name   string
		pad    uint64
		skip   span
		blocks []block
		want   []span
	}{
		{"adjacent runs merge", 0, span{}, []block{{0, 100, []span{{10, 20}, {20, 30}}}}, []span{{10, 30}}},
		{"gap kept", 0, span{}, []block{{0, 100, []span{{10, 20}, {21, 30}}}}, []span{{10, 20}, {21, 30}}},
		{"pad closes gap", 3, span{}, []block{{0, 100, []span{{10, 20}, {25, 30}}}}, []span{{7, 33}}},
		{"pad clipped to block", 3, span{}, []block{{10, 40, []span{{10, 20}, {38, 40}}}}, []span{{10, 23}, {35, 40}}},
		{"pad not across blocks", 8, span{}, []block{{0, 20, []span{{0, 20}}}, {30, 50, []span{{30, 50}}}}, []span{{0, 20}, {30, 50}}},
		{"skip inside", 0, span{40, 60}, []block{{0, 100, []span{{0, 100}}}}, []span{{0, 40}, {60, 100}}},
		{"skip covers all", 0, span{0, 100}, []block{{0, 100, []span{{0, 100}}}}, nil},
		{"skip at start", 0, span{0, 10}, []block{{0, 100, []span{{0, 100}}}}, []span{{10, 100}}},
		{"skip at end", 0, span{90, 200}, []block{{0, 100, []span{{0, 100}}}}, []span{{0, 90}}},
		{"skip elsewhere", 4, span{500, 600}, []block{{0, 100, []span{{50, 60}}}}, []span{{46, 64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []span
			c := &coalescer{pad: tt.pad, skip: tt.skip, emit: func(s span) error { got = append(got, s); return nil }}
			for _, b := range tt.blocks {
				if err := c.block(b.lo, b.hi); err != nil {
					t.Fatal(err)
				}
				for _, r := range b.runs {
					if err := c.add(r.start, r.end); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := c.flush(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ranges %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMappingAt(t *testing.T) {
	t.Parallel()
	ms := []Mapping{{Start: 0x1000, End: 0x2000}, {Start: 0x2000, End: 0x3000}, {Start: 0x5000, End: 0x6000}}
	tests := []struct {
		addr  uint64
		start uint64
		ok    bool
	}{
		{0x0fff, 0, false},
		{0x1000, 0x1000, true},
		{0x1fff, 0x1000, true},
		{0x2000, 0x2000, true},
		{0x3000, 0, false},
		{0x5fff, 0x5000, true},
		{0x6000, 0, false},
	}
	for _, tt := range tests {
		m, ok := mappingAt(ms, tt.addr)
		if ok != tt.ok || m.Start != tt.start {
			t.Errorf("mappingAt(%#x) = %#x, %v; want %#x, %v", tt.addr, m.Start, ok, tt.start, tt.ok)
		}
	}
}

package memscan

import (
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
)

// testSegment is a PT_LOAD segment for writeCore.
type testSegment struct {
	vaddr uint64
	flags elf.ProgFlag
	data  []byte // the bytes in the file: Filesz = len(data)
	memsz uint64 // 0 means len(data)
}

// testFile is an NT_FILE entry for writeCore.
type testFile struct {
	start, end, pgoff uint64
	name              string
}

// skipWithoutCoreScan skips where ScanCore cannot run, before a test
// leaves files behind.
func skipWithoutCoreScan(t testing.TB) {
	t.Helper()
	if b, err := mapBuffer(1); errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	} else if err := unmapBuffer(b); err != nil {
		t.Fatal(err)
	}
}

// writeCore writes a core file built by coretest.Build into a temporary
// directory.
func writeCore(t testing.TB, typ elf.Type, segs []testSegment, files []testFile) string {
	t.Helper()
	skipWithoutCoreScan(t)
	cs := make([]coretest.Segment, len(segs))
	for i, s := range segs {
		cs[i] = coretest.Segment{Vaddr: s.vaddr, Flags: s.flags, Data: s.data, Memsz: s.memsz}
	}
	cf := make([]coretest.File, len(files))
	for i, f := range files {
		cf[i] = coretest.File{Start: f.start, End: f.end, Pgoff: f.pgoff, Name: f.name}
	}
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, coretest.Build(typ, cs, cf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestScanCore(t *testing.T) {
	t.Parallel()
	pat := []byte("core-secret-0123")
	n := uint64(len(pat))
	seg := func(vaddr uint64, flags elf.ProgFlag, size int, memsz uint64, plants ...uint64) testSegment {
		data := make([]byte, size)
		rand.Read(data)
		for _, at := range plants {
			copy(data[at-vaddr:], pat)
		}
		return testSegment{vaddr: vaddr, flags: flags, data: data, memsz: memsz}
	}
	const a, b, c, d = 0x400000, 0x403000, 0x7f0000000000, 0x10000000
	rw, r, rx := elf.PF_R|elf.PF_W, elf.PF_R, elf.PF_R|elf.PF_X
	segs := []testSegment{
		// Listed out of order: ScanCore sorts by address.
		seg(d, rw, readBufSize+0x1000, 0, d+readBufSize-7, d+readBufSize+0x1000-n),
		// a and b are contiguous: a match may straddle them.
		seg(a, rx, 0x3000, 0, a+0x100),
		seg(b, r, 0x1000, 0, b+0x1000-n),
		// Only the first half of c is in the file.
		seg(c, rw, 0x2000, 0x4000, c+0x2000-n-20),
		{vaddr: 0x500000, flags: rw, memsz: 0x1000}, // nothing in the file
	}
	// The straddling match: its first 5 bytes end a, the rest start b.
	copy(segs[1].data[0x3000-5:], pat[:5])
	copy(segs[2].data, pat[5:])
	// A partial match ends c's file bytes: the rest was not dumped.
	copy(segs[3].data[0x2000-(n-2):], pat[:n-2])

	files := []testFile{{start: a, end: b + 0x1000, pgoff: 2, name: "/usr/bin/victim"}}
	path := writeCore(t, elf.ET_CORE, segs, files)

	hits, err := ScanCore(path, mustPattern(t, pat))
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	mA := Mapping{Start: a, End: a + 0x3000, Perms: "r-xp", Offset: 2 * 4096, Path: "/usr/bin/victim"}
	mB := Mapping{Start: b, End: b + 0x1000, Perms: "r--p", Offset: 2*4096 + 0x3000, Path: "/usr/bin/victim"}
	mC := Mapping{Start: c, End: c + 0x4000, Perms: "rw-p"}
	mD := Mapping{Start: d, End: d + readBufSize + 0x1000, Perms: "rw-p"}
	want := []Hit{
		{a + 0x100, mA},
		{b - 5, mA},
		{b + 0x1000 - n, mB},
		{d + readBufSize - 7, mD},
		{d + readBufSize + 0x1000 - n, mD},
		{c + 0x2000 - n - 20, mC},
	}
	if !slices.Equal(hits, want) {
		t.Fatalf("hits:\n%+v\nwant:\n%+v", hits, want)
	}

	ms, err := CoreMaps(path)
	if err != nil {
		t.Fatal(err)
	}
	wantMaps := []Mapping{mA, mB, {Start: 0x500000, End: 0x501000, Perms: "rw-p"}, mD, mC}
	if !slices.Equal(ms, wantMaps) {
		t.Fatalf("CoreMaps:\n%+v\nwant:\n%+v", ms, wantMaps)
	}
}

func TestScanCoreTruncated(t *testing.T) {
	t.Parallel()
	pat := []byte("truncated?")
	data := make([]byte, 0x3000)
	copy(data[0x100:], pat)
	copy(data[0x2800:], pat)
	path := writeCore(t, elf.ET_CORE, []testSegment{{vaddr: 0x1000, flags: elf.PF_R, data: data}}, nil)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-0x1000); err != nil {
		t.Fatal(err)
	}
	hits, err := ScanCore(path, mustPattern(t, pat))
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].Addr != 0x1100 || hits[0].Mapping.Name() != "anon" {
		t.Fatalf("hits %+v, want one at 0x1100 in an anon mapping", hits)
	}
}

func TestScanCoreErrors(t *testing.T) {
	t.Parallel()
	skipWithoutCoreScan(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not an ELF file "), 10), 0o600); err != nil {
		t.Fatal(err)
	}
	exec := writeCore(t, elf.ET_EXEC, []testSegment{{vaddr: 0x1000, data: []byte("core-secret")}}, nil)
	tests := []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(dir, "missing"), fs.ErrNotExist},
		{"not ELF", garbage, ErrNotCore},
		{"not a core", exec, ErrNotCore},
		{"directory", dir, ErrNotCore},
	}
	p := mustPattern(t, []byte("core-secret"))
	for _, tt := range tests {
		if _, err := ScanCore(tt.path, p); !errors.Is(err, tt.want) {
			t.Errorf("%s: ScanCore: err = %v, want %v", tt.name, err, tt.want)
		}
		if _, err := CoreMaps(tt.path); !errors.Is(err, tt.want) {
			t.Errorf("%s: CoreMaps: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestParseNTFile(t *testing.T) {
	t.Parallel()
	le := binary.LittleEndian
	words := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = le.AppendUint64(b, v)
		}
		return b
	}
	good := append(words(2, 4096, 0x1000, 0x2000, 1, 0x5000, 0x6000, 0), "/a\x00/b c\x00"...)
	tests := []struct {
		name string
		desc []byte
		want []fileMapping
	}{
		{"good", good, []fileMapping{{0x1000, 0x2000, 4096, "/a"}, {0x5000, 0x6000, 0, "/b c"}}},
		{"last name unterminated", good[:len(good)-1], []fileMapping{{0x1000, 0x2000, 4096, "/a"}, {0x5000, 0x6000, 0, "/b c"}}},
		{"empty", nil, nil},
		{"header only", words(0, 4096), nil},
		{"count too big", words(1<<60, 4096, 1, 2, 3), nil},
		{"triples cut short", words(2, 4096, 0x1000, 0x2000, 1), nil},
		{"names missing", append(words(2, 4096, 0x1000, 0x2000, 1, 0x5000, 0x6000, 0), "/a"...), nil},
	}
	for _, tt := range tests {
		if got := parseNTFile(tt.desc, le, 8); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	b32 := append(le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 1), 4096), 0x1000), 0x3000), 2), "/x\x00"...)
	if got := parseNTFile(b32, le, 4); !slices.Equal(got, []fileMapping{{0x1000, 0x3000, 2 * 4096, "/x"}}) {
		t.Errorf("32-bit: %+v", got)
	}
}

// BenchmarkScanCore measures a whole ScanCore over a 64 MiB segment in the
// page cache: reading through the off-heap buffer plus matching.
func BenchmarkScanCore(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	path := writeCore(b, elf.ET_CORE, []testSegment{{vaddr: 1 << 30, flags: elf.PF_R, data: data}}, nil)
	p := mustPattern(b, []byte("0123456789abcdef"))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ScanCore(path, p); err != nil {
			b.Fatal(err)
		}
	}
}

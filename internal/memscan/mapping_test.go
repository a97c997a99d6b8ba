package memscan

import (
	"errors"
	"io"
	"strings"
	"testing"
)

const sampleMaps = `00400000-004ad000 r-xp 00000000 fe:00 9978399                            /tmp/go-build/exe/prog
0059d000-005d3000 rw-p 00000000 00:00 0 
15e074000000-15e075c00000 ---p 00000000 00:00 0
55a63e612000-55a63e633000 rw-p 00000000 00:00 0                          [heap]
7f2f1c5f0000-7f2f1c616000 r--p 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f2f1c7d3000-7f2f1c7da000 r--s 00000000 fe:00 325737                     /home/u/My Documents/a file.bin (deleted)
7fbf897e3000-7fbf897e7000 r--p 00000000 00:00 0                          [vvar]
7ffc4ace1000-7ffc4ad02000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

const sampleSmaps = `00400000-004ad000 r-xp 00000000 fe:00 9978399                            /tmp/go-build/exe/prog
Size:                708 kB
KernelPageSize:        4 kB
Rss:                 512 kB
Swap:                  0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd ex mr mw me
0059d000-005d3000 rw-p 00000000 00:00 0 
Size:                216 kB
Rss:                  40 kB
Swap:                  8 kB
VmFlags: rd wr mr mw me ac lo dd
15e074000000-15e075c00000 ---p 00000000 00:00 0
Rss:                   0 kB
Swap:                  0 kB
VmFlags: mr mw me
7f2f1c7d3000-7f2f1c7da000 r--s 00000000 fe:00 325737                     /home/u/My Documents/a file.bin (deleted)
Rss:                  28 kB
VmFlags: rd mr me ms dd
7fbf897e3000-7fbf897e7000 r--p 00000000 00:00 0                          [vvar]
Rss:                   0 kB
ProtectionKey:         0
VmFlags: rd mr pf io de dd
`

func TestParseProcMaps(t *testing.T) {
	t.Parallel()
	vs, err := parseProcMaps(strings.NewReader(sampleMaps), strings.NewReader(sampleSmaps))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		m             Mapping
		resident      uint64
		residentKnown bool
	}
	want := []row{
		{Mapping{Start: 0x400000, End: 0x4ad000, Perms: "r-xp", Path: "/tmp/go-build/exe/prog"}, 512 << 10, true},
		{Mapping{Start: 0x59d000, End: 0x5d3000, Perms: "rw-p", Locked: true, DontDump: true}, 48 << 10, true},
		{Mapping{Start: 0x15e074000000, End: 0x15e075c00000, Perms: "---p"}, 0, true},
		// Missing from smaps (changed in between): no flags, residency unknown.
		{Mapping{Start: 0x55a63e612000, End: 0x55a63e633000, Perms: "rw-p", Path: "[heap]"}, 0, false},
		{Mapping{Start: 0x7f2f1c5f0000, End: 0x7f2f1c616000, Perms: "r--p", Offset: 0x26000, Path: "/usr/lib/x86_64-linux-gnu/libc.so.6"}, 0, false},
		{Mapping{Start: 0x7f2f1c7d3000, End: 0x7f2f1c7da000, Perms: "r--s", Path: "/home/u/My Documents/a file.bin (deleted)", DontDump: true}, 28 << 10, true},
		{Mapping{Start: 0x7fbf897e3000, End: 0x7fbf897e7000, Perms: "r--p", Path: "[vvar]", DontDump: true}, 0, true},
		{Mapping{Start: 0x7ffc4ace1000, End: 0x7ffc4ad02000, Perms: "rw-p", Path: "[stack]"}, 0, false},
		{Mapping{Start: 0xffffffffff600000, End: 0xffffffffff601000, Perms: "--xp", Path: "[vsyscall]"}, 0, false},
	}
	if len(vs) != len(want) {
		t.Fatalf("got %d mappings, want %d", len(vs), len(want))
	}
	for i, w := range want {
		got := row{vs[i].Mapping, vs[i].resident, vs[i].residentKnown}
		if got != w {
			t.Errorf("mapping %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if vs[1].Name() != "anon" || vs[3].Name() != "[heap]" {
		t.Errorf("Name() = %q, %q; want anon, [heap]", vs[1].Name(), vs[3].Name())
	}
}

func TestParseProcMapsWithoutSmaps(t *testing.T) {
	t.Parallel()
	vs, err := parseProcMaps(strings.NewReader(sampleMaps), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 9 {
		t.Fatalf("got %d mappings, want 9", len(vs))
	}
	for _, v := range vs {
		if v.Locked || v.DontDump || v.residentKnown {
			t.Errorf("%s: smaps data without smaps: %+v", v.Name(), v)
		}
	}
}

func TestParseMapsLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		want Mapping
		err  bool
	}{
		{line: "1000-2000 rw-p 00000000 00:00 0", want: Mapping{Start: 0x1000, End: 0x2000, Perms: "rw-p"}},
		{line: "1000-2000 rw-p 00000000 00:00 0 ", want: Mapping{Start: 0x1000, End: 0x2000, Perms: "rw-p"}},
		{line: "1000-2000 r-xs 0000abcd 08:01 42   /a b", want: Mapping{Start: 0x1000, End: 0x2000, Perms: "r-xs", Offset: 0xabcd, Path: "/a b"}},
		{line: "1000-2000 rw-p 00000000 00:00", err: true},
		{line: "", err: true},
		{line: "1000 rw-p 00000000 00:00 0", err: true},
		{line: "2000-1000 rw-p 00000000 00:00 0", err: true},
		{line: "1000-1000 rw-p 00000000 00:00 0", err: true},
		{line: "x000-2000 rw-p 00000000 00:00 0", err: true},
		{line: "1000-2000 rwxp? 00000000 00:00 0", err: true},
		{line: "1000-2000 rwzp 00000000 00:00 0", err: true},
		{line: "1000-2000 rw-p 0000000g 00:00 0", err: true},
		{line: "1000-10000000000000000 rw-p 00000000 00:00 0", err: true},
	}
	for _, tt := range tests {
		got, err := parseMapsLine(tt.line)
		if tt.err {
			if !errors.Is(err, ErrBadMaps) {
				t.Errorf("parseMapsLine(%q): err = %v, want ErrBadMaps", tt.line, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseMapsLine(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}

func TestParseSmapsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, smaps string
	}{
		{"field before header", "Rss: 4 kB\n"},
		{"bad header", "1000-2000 rw-p\nRss: 4 kB\n"},
		{"bad rss", "1000-2000 rw-p 00000000 00:00 0\nRss: lots kB\n"},
		{"bad unit", "1000-2000 rw-p 00000000 00:00 0\nSwap: 4 MB\n"},
		{"garbage", "1000-2000 rw-p 00000000 00:00 0\nnot a field\n"},
	}
	for _, tt := range tests {
		_, err := parseProcMaps(strings.NewReader("1000-2000 rw-p 00000000 00:00 0\n"), strings.NewReader(tt.smaps))
		if !errors.Is(err, ErrBadMaps) {
			t.Errorf("%s: err = %v, want ErrBadMaps", tt.name, err)
		}
	}
}

func TestParseProcMapsReadError(t *testing.T) {
	t.Parallel()
	r := io.MultiReader(strings.NewReader("1000-2000 rw-p 00000000 00:00 0\n"), errReader{io.ErrUnexpectedEOF})
	if _, err := parseProcMaps(r, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	long := "1000-2000 rw-p 00000000 00:00 0 /" + strings.Repeat("x", 2<<20) + "\n"
	if _, err := parseProcMaps(strings.NewReader(long), nil); err == nil {
		t.Fatal("a 2 MiB line parsed without error")
	}
	vs, err := parseProcMaps(strings.NewReader("\n1000-2000 rw-p 00000000 00:00 0\n\n"), nil)
	if err != nil || len(vs) != 1 || vs[0].Start != 0x1000 {
		t.Fatalf("blank lines: %v, %v", vs, err)
	}
}

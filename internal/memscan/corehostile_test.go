package memscan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
)

// rawCore returns a little-endian x86-64 ELF64 core of size bytes: the
// header, progs at offset 64 and, behind them, whatever fill writes.
func rawCore(size int, progs []elf.Prog64, fill func(b []byte)) []byte {
	le := binary.LittleEndian
	hdr := elf.Header64{
		Type: uint16(elf.ET_CORE), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(progs)),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var w bytes.Buffer
	// Writes to a bytes.Buffer of fixed-size values cannot fail.
	_ = binary.Write(&w, le, hdr)
	_ = binary.Write(&w, le, progs)
	b := make([]byte, max(size, w.Len()))
	copy(b, w.Bytes())
	if fill != nil {
		fill(b)
	}
	return b
}

// putNote writes a "CORE" note of type typ with a descriptor of descsz
// bytes (desc, zero-padded) at b[off:] and returns the offset after it.
func putNote(b []byte, off int, typ, descsz uint32, desc []byte) int {
	le := binary.LittleEndian
	le.PutUint32(b[off:], 5)
	le.PutUint32(b[off+4:], descsz)
	le.PutUint32(b[off+8:], typ)
	copy(b[off+12:], "CORE\x00")
	copy(b[off+20:], desc)
	return off + 20 + int(descsz+3)&^3
}

// writeBytes writes b to a file in a temporary directory.
func writeBytes(t testing.TB, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load and note describe program headers for rawCore.
func load(off, vaddr, filesz, memsz uint64) elf.Prog64 {
	return elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R), Off: off, Vaddr: vaddr, Filesz: filesz, Memsz: memsz}
}

func note(off, filesz uint64) elf.Prog64 {
	return elf.Prog64{Type: uint32(elf.PT_NOTE), Off: off, Filesz: filesz, Align: 4}
}

// TestOpenCoreHostile feeds the reader crafted cores, each wrong in one
// way, and checks that it refuses those whose segments make no sense with
// ErrNotCore and reads the others as far as they go, without a panic.
func TestOpenCoreHostile(t *testing.T) {
	t.Parallel()
	skipWithoutCoreScan(t)
	const data = 0x1000 // where the segments' bytes start
	secret := func(b []byte) { copy(b[data:], "core-secret") }
	for _, tc := range []struct {
		name  string
		core  []byte
		err   error    // from CoreMaps and OpenCore
		hits  int      // of "core-secret" when accepted
		names []string // of the mappings when accepted
	}{
		{name: "segment past the end of the file", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 64, 64), load(data+1<<20, 0x20000, 1<<20, 1<<20),
		}, secret), hits: 1},
		{name: "segment at an offset past 2^63", core: rawCore(data+64, []elf.Prog64{
			load(1<<63, 0x10000, 64, 64),
		}, nil), err: ErrNotCore},
		{name: "segment claiming 2^40 bytes", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 1<<40, 1<<40),
		}, secret), hits: 1},
		{name: "end of segment overflows", core: rawCore(data+64, []elf.Prog64{
			load(data, math.MaxUint64-16, 64, 64),
		}, nil), err: ErrNotCore},
		{name: "filesz above memsz", core: rawCore(data+64, []elf.Prog64{
			load(data+16, 0x10000, 48, 8), // the secret lies beyond memsz
			load(data, 0x20000, 8, 8),
		}, func(b []byte) { copy(b[data+32:], "core-secret") })},
		{name: "segments overlapping in memory", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 32, 0x1000), load(data+32, 0x10800, 32, 32),
		}, nil), err: ErrNotCore},
		{name: "segment inside another in memory", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 16, 0x100000), load(data+32, 0x20000, 32, 32),
		}, nil), err: ErrNotCore},
		{name: "segments sharing bytes of the file", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 64, 64), load(data+32, 0x20000, 64, 64),
		}, secret), err: ErrNotCore},
		{name: "segments claiming the same bytes past the end", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 1<<30, 1<<30), load(data, 0x80000000, 1<<30, 1<<30),
		}, secret), err: ErrNotCore},
		{name: "notes sharing bytes of the file", core: rawCore(data+64, []elf.Prog64{
			note(data, 64), note(data, 64), load(data+64, 0x10000, 0, 64),
		}, nil), err: ErrNotCore},
		{name: "note and segment sharing bytes", core: rawCore(data+64, []elf.Prog64{
			note(data, 64), load(data, 0x10000, 64, 64),
		}, nil), err: ErrNotCore},
		{name: "empty segments at one offset", core: rawCore(data+64, []elf.Prog64{
			load(data, 0x10000, 0, 64), load(data, 0x20000, 0, 64), load(data, 0x30000, 64, 64),
		}, secret), hits: 1},
		{name: "note claiming 2^40 bytes", core: rawCore(data+64, []elf.Prog64{
			note(data, 1<<40), load(0x800, 0x10000, 64, 64),
		}, func(b []byte) {
			putNote(b, data, ntFile, 0xfffffff0, nil)
			copy(b[0x800:], "core-secret")
		}), hits: 1},
		{name: "NT_FILE count overflowing", core: rawCore(data+256, []elf.Prog64{
			note(data, 256), load(0x800, 0x10000, 64, 64),
		}, func(b []byte) {
			putNote(b, data, ntFile, 64, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1<<62), 4096))
		}), names: []string{"anon"}},
		{name: "NT_FILE of page size 0", core: rawCore(data+256, []elf.Prog64{
			note(data, 256), load(0x800, 0x10000, 64, 64),
		}, func(b []byte) {
			putNote(b, data, ntFile, 48, ntFileDesc(0, [3]uint64{0x10000, 0x11000, 5}, "/x"))
		}), names: []string{"anon"}},
		{name: "NT_FILE offset overflowing", core: rawCore(data+256, []elf.Prog64{
			note(data, 256), load(0x800, 0x10000, 64, 64),
		}, func(b []byte) {
			putNote(b, data, ntFile, 48, ntFileDesc(4096, [3]uint64{0x10000, 0x11000, 1 << 60}, "/x"))
		}), names: []string{"anon"}},
		{name: "NT_FILE well formed", core: rawCore(data+256, []elf.Prog64{
			note(data, 256), load(0x800, 0x10000, 64, 64),
		}, func(b []byte) {
			putNote(b, data, ntFile, 48, ntFileDesc(4096, [3]uint64{0x10000, 0x11000, 5}, "/x"))
		}), names: []string{"/x"}},
		{name: "program headers past the end", core: func() []byte {
			b := rawCore(0, []elf.Prog64{load(data, 0x10000, 64, 64)}, nil)
			binary.LittleEndian.PutUint16(b[56:], 0xffff) // e_phnum
			return b
		}(), err: ErrNotCore},
		{name: "program header entries too small", core: func() []byte {
			b := rawCore(data+64, []elf.Prog64{load(data, 0x10000, 64, 64)}, nil)
			binary.LittleEndian.PutUint16(b[54:], 32) // e_phentsize
			return b
		}(), err: ErrNotCore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeBytes(t, tc.core)
			ms, err := CoreMaps(path)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("CoreMaps: %v, %v; want %v", ms, err, tc.err)
				}
				if c, err := OpenCore(path); !errors.Is(err, tc.err) {
					c.Close()
					t.Fatalf("OpenCore: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CoreMaps: %v", err)
			}
			if tc.names != nil {
				var names []string
				for _, m := range ms {
					names = append(names, m.Name())
				}
				if !slices.Equal(names, tc.names) {
					t.Fatalf("mappings named %q, want %q", names, tc.names)
				}
			}
			hits, err := ScanCore(path, mustPattern(t, []byte("core-secret")))
			if err != nil {
				t.Fatalf("ScanCore: %v", err)
			}
			if len(hits) != tc.hits {
				t.Fatalf("ScanCore: %d hits %v, want %d", len(hits), hits, tc.hits)
			}
			checkCoreFile(t, path)
		})
	}
}

// ntFileDesc returns an NT_FILE descriptor of one entry.
func ntFileDesc(pageSize uint64, e [3]uint64, name string) []byte {
	le := binary.LittleEndian
	b := le.AppendUint64(le.AppendUint64(nil, 1), pageSize)
	for _, v := range e {
		b = le.AppendUint64(b, v)
	}
	return append(b, name+"\x00"...)
}

// TestOpenCoreTruncatedEverywhere cuts a well-formed core at every byte
// up to the end of its notes, then at each segment boundary, and checks
// that every prefix is refused with ErrNotCore or read without a panic.
func TestOpenCoreTruncatedEverywhere(t *testing.T) {
	t.Parallel()
	skipWithoutCoreScan(t)
	stack := make([]byte, 4096)
	frame, _ := coretest.PutSignalFrame(stack, 0xc000100000, 832, 0x401000, 0xc000200040)
	b := coretest.BuildThreads(elf.ET_CORE, []coretest.Segment{
		{Vaddr: 0x400000, Data: []byte("core-secret in the first segment")},
		{Vaddr: 0xc000100000, Data: stack},
	}, []coretest.File{{Start: 0x400000, End: 0x401000, Name: "/bin/x"}},
		[]coretest.Thread{{TID: 7, RIP: 0x401000, RSP: frame - 0x100}})
	dir := t.TempDir()
	cut := func(n int) {
		path := filepath.Join(dir, fmt.Sprint(n))
		if err := os.WriteFile(path, b[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		checkCoreFile(t, path)
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	notesEnd := int(ef.Progs[0].Off + ef.Progs[0].Filesz)
	for n := range notesEnd + 1 {
		cut(n)
	}
	for _, p := range ef.Progs[1:] {
		cut(int(p.Off) + 1)
		cut(int(p.Off + p.Filesz))
	}
}

// TestParseNTFileNamesAllocation checks that the names of an NT_FILE note
// cost no more heap than the note: splitting a descriptor of a million
// NULs into every name it could hold took a 24-byte slice header per NUL.
func TestParseNTFileNamesAllocation(t *testing.T) {
	le := binary.LittleEndian
	desc := ntFileDesc(4096, [3]uint64{0x10000, 0x11000, 0}, "/x")
	desc = append(desc, make([]byte, 1<<20)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fms := parseNTFile(desc, le, 8)
	runtime.ReadMemStats(&after)
	if len(fms) != 1 || fms[0].path != "/x" {
		t.Fatalf("parseNTFile = %+v", fms)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("parseNTFile of a %d-byte note allocated %d bytes", len(desc), n)
	}
}

// TestOpenCoreNoteAllocation checks that a note header cannot make the
// reader allocate more than the file holds: an NT_FILE claiming 15 MiB in
// a file of a few KiB allocated the 15 MiB before finding the file short.
func TestOpenCoreNoteAllocation(t *testing.T) {
	const data = 0x1000
	path := writeBytes(t, rawCore(data+64, []elf.Prog64{note(data, 1<<40), load(0x800, 0x10000, 64, 64)},
		func(b []byte) { putNote(b, data, ntFile, 15<<20, nil) }))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := CoreMaps(path); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("CoreMaps of a %d-byte core allocated %d bytes", data+64, n)
	}
}

// TestCoreManyFiles names 20000 segments from an NT_FILE note of 20000
// entries, which a lookup of every segment in every entry made take
// 4*10^8 steps; a hostile core can have 65535 segments and a million
// entries.
func TestCoreManyFiles(t *testing.T) {
	t.Parallel()
	const n = 20000
	segs := make([]coretest.Segment, n)
	files := make([]coretest.File, n)
	for i := range n {
		start := uint64(0x10000 + 0x2000*i)
		segs[i] = coretest.Segment{Vaddr: start, Memsz: 0x1000}
		files[i] = coretest.File{Start: start, End: start + 0x1000, Pgoff: uint64(i), Name: fmt.Sprint("/f", i)}
	}
	// Empty segments have no bytes in the file: give the first one some.
	segs[0].Data = make([]byte, 0x1000)
	ms, err := CoreMaps(writeBytes(t, coretest.Build(elf.ET_CORE, segs, files)))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n {
		t.Fatalf("%d mappings, want %d", len(ms), n)
	}
	for i, m := range ms {
		if want := fmt.Sprint("/f", i); m.Path != want || m.Offset != uint64(i)*4096 {
			t.Fatalf("mapping %d: %s at %#x, want %s at %#x", i, m.Path, m.Offset, want, i*4096)
		}
	}
}

// TestCoreThreadsTruncated cuts a core of two threads after the first
// NT_PRSTATUS note and inside the second: Threads must refuse the list
// rather than return one thread, which would make the frames the other
// runs under look left behind, or a bare EOF.
func TestCoreThreadsTruncated(t *testing.T) {
	t.Parallel()
	b := coretest.BuildThreads(elf.ET_CORE, nil, nil, []coretest.Thread{
		{TID: 1, RIP: 0x401000, RSP: 0xc000001000},
		{TID: 2, RIP: 0x401000, RSP: 0xc000002000},
	})
	const noteLen = 20 + 336 // header, "CORE" padded, prstatus
	notes := 64 + 56         // one program header: the PT_NOTE
	for _, n := range []int{notes + noteLen, notes + noteLen + 100} {
		c, err := OpenCore(writeBytes(t, b[:n]))
		if err != nil {
			t.Fatal(err)
		}
		ts, err := c.Threads()
		c.Close()
		if !errors.Is(err, ErrNotCore) {
			t.Errorf("Threads of a core cut at %d: %+v, %v; want ErrNotCore", n, ts, err)
		}
	}
}

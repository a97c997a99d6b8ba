package memscan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// ScanCore returns every occurrence of p in the memory image of an ELF core
// file, in address order. Each PT_LOAD segment becomes a Mapping with
// Start = Vaddr, End = Vaddr+Memsz and Perms from its flags ("rw-p"; a core
// does not say whether memory was shared); Path and Offset come from the
// NT_FILE note when the core has one, Locked and DontDump are always false.
//
// Only the bytes stored in the file are searched: the tail of a segment
// beyond its Filesz (memory the dumper left out, such as VM_DONTDUMP
// mappings) is not. Segments that follow each other without a gap are
// searched as one stream, so a match may straddle them; its Hit carries the
// segment holding its first byte. A truncated core is searched as far as it
// goes.
//
// The segments are read through a buffer mapped outside the Go heap, wiped
// after every chunk; only the NT_FILE note (file names) is read onto the
// heap. It returns ErrEmptyPattern for a nil or zero p, ErrNotCore when the
// file is not an ELF core (or one whose segments overlap in memory or share
// bytes of the file, which no dumper writes), ErrUnsupported where memory
// cannot be mapped, and wrapped I/O errors.
//
// ScanCore is ScanCoreAll with one pattern; to look for several, use
// ScanCoreAll, which reads the file once for all of them.
func ScanCore(path string, p *Pattern) ([]Hit, error) {
	return first(ScanCoreAll(path, []*Pattern{p}))
}

// ScanCoreAll searches the ELF core file at path for every pattern of ps in
// one pass over the file and returns the hits of ps[i] in result[i], in
// address order: exactly what ScanCore(path, ps[i]) would return. The
// result has len(ps) entries, nil where a pattern was not found; after an
// error during the scan it holds the hits found until then.
//
// Zero-filled memory, which makes up most of a core (a Go process's
// reservations are dumped as zero pages), costs little: runs of zeros are
// found a page or a 64-byte line at a time and every window lying wholly in
// one is skipped, since only an all-zero pattern can match there. Holes of
// a sparse core file are not even read, where the system can report them.
//
// It returns ErrEmptyPattern when any pattern is nil or zero, and otherwise
// the errors of ScanCore.
func ScanCoreAll(path string, ps []*Pattern) (_ [][]Hit, err error) {
	if err := checkAll(ps); err != nil {
		return nil, err
	}
	f, _, segs, err := openCore(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hits := make([][]Hit, len(ps))
	if len(ps) == 0 {
		return hits, nil
	}

	buf, err := mapBuffer(readBufSize)
	if err != nil {
		return nil, err
	}
	defer func() {
		if uerr := unmapBuffer(buf); uerr != nil && err == nil {
			err = uerr
		}
	}()

	ms := make([]Mapping, len(segs))
	for i := range segs {
		ms[i] = segs[i].Mapping
	}
	holes := newHoleMap(f)
	sc := &chunkScanner{
		ps:       ps,
		buf:      buf,
		pageSize: uint64(os.Getpagesize()),
		hit: func(i int, addr uint64) {
			m, _ := mappingAt(ms, addr)
			hits[i] = append(hits[i], Hit{Addr: addr, Mapping: m})
		},
	}
	for i := 0; i < len(segs); {
		j := i + 1
		for j < len(segs) && segs[j-1].full() && segs[j].Start == segs[j-1].End {
			j++
		}
		block := segs[i:j]
		sc.read = coreReader(f, block)
		if holes != nil {
			sc.zeros = coreZeros(holes, block)
		}
		last := block[len(block)-1]
		if err := sc.scanRange(block[0].Start, last.Start+last.filesz); err != nil {
			return hits, fmt.Errorf("memscan: %s: %w", path, err)
		}
		i = j
	}
	return hits, nil
}

// CoreMaps returns the mappings of the ELF core file at path in address
// order: one per PT_LOAD segment with a non-zero size, described as ScanCore
// describes them in its hits. It returns ErrNotCore when the file is not an
// ELF core file, and wrapped I/O errors.
func CoreMaps(path string) ([]Mapping, error) {
	f, _, segs, err := openCore(path)
	if err != nil {
		return nil, err
	}
	f.Close()
	ms := make([]Mapping, len(segs))
	for i := range segs {
		ms[i] = segs[i].Mapping
	}
	return ms, nil
}

// openCore opens the core file at path and lists its segments. The caller
// closes the file.
func openCore(path string) (*os.File, *elf.File, []coreSegment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("memscan: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("memscan: %w", err)
	}
	ef, err := elf.NewFile(f)
	if err == nil && ef.Type != elf.ET_CORE {
		err = fmt.Errorf("type is %v", ef.Type)
	}
	var segs []coreSegment
	if err == nil {
		segs, err = coreSegments(ef, uint64(max(st.Size(), 0)))
	}
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("%w: %s: %w", ErrNotCore, path, err)
	}
	return f, ef, segs, nil
}

// coreSegment is a PT_LOAD segment of a core file.
type coreSegment struct {
	Mapping
	off    uint64 // file offset of Start
	filesz uint64 // bytes stored in the file, at most End-Start
}

// full reports whether the file holds the whole segment.
func (s coreSegment) full() bool { return s.filesz == s.End-s.Start }

// coreSegments returns the non-empty PT_LOAD segments of ef, a file of
// size bytes, sorted by address, named after the NT_FILE note where it has
// an entry for them.
//
// It refuses segments that overlap in memory, which ScanCore and
// Core.ReadAt would each read from a different one of, and PT_LOAD and
// PT_NOTE segments that share bytes of the file: a core stores every byte
// once, and a few KiB of program headers pointing 65535 segments at the
// same MiB would make a scan read it 65535 times.
func coreSegments(ef *elf.File, size uint64) ([]coreSegment, error) {
	var segs []coreSegment
	var stored []span // the file bytes of each segment, up to the end of the file
	for _, pr := range ef.Progs {
		if pr.Type == elf.PT_NOTE {
			if n := storedLen(pr.Off, pr.Filesz, size); n > 0 {
				stored = append(stored, span{pr.Off, pr.Off + n})
			}
		}
		if pr.Type != elf.PT_LOAD || pr.Memsz == 0 {
			continue
		}
		end := pr.Vaddr + pr.Memsz
		if end < pr.Vaddr || pr.Off > math.MaxInt64 {
			return nil, fmt.Errorf("PT_LOAD at %#x overflows", pr.Vaddr)
		}
		s := coreSegment{
			Mapping: Mapping{Start: pr.Vaddr, End: end, Perms: permsOf(pr.Flags)},
			off:     pr.Off,
			filesz:  min(pr.Filesz, pr.Memsz, math.MaxInt64-pr.Off),
		}
		if n := storedLen(s.off, s.filesz, size); n > 0 {
			stored = append(stored, span{s.off, s.off + n})
		}
		segs = append(segs, s)
	}
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].Start < segs[j].Start })
	for i := 1; i < len(segs); i++ {
		if segs[i].Start < segs[i-1].End {
			return nil, fmt.Errorf("PT_LOAD segments at %#x and %#x overlap", segs[i-1].Start, segs[i].Start)
		}
	}
	sort.Slice(stored, func(i, j int) bool { return stored[i].start < stored[j].start })
	for i := 1; i < len(stored); i++ {
		if stored[i].start < stored[i-1].end {
			return nil, fmt.Errorf("segments at file offsets %#x and %#x share bytes", stored[i-1].start, stored[i].start)
		}
	}

	// Only now are the notes walked: with no bytes shared, that reads
	// each byte of the file once at most.
	files := coreFiles(ef, size)
	for i := range segs {
		// The entries are sorted and disjoint (parseNTFile), so the
		// first that ends above Start is the only one that can hold it.
		s := &segs[i]
		j := sort.Search(len(files), func(j int) bool { return files[j].end > s.Start })
		if j < len(files) && files[j].start <= s.Start {
			s.Path = files[j].path
			s.Offset = files[j].offset + (s.Start - files[j].start)
		}
	}
	return segs, nil
}

// storedLen returns how many of the n bytes at offset off of a file of
// size bytes the file holds: a truncated core stores less than its
// program headers say.
func storedLen(off, n, size uint64) uint64 {
	if off >= size {
		return 0
	}
	return min(n, size-off)
}

// noteReader reads the bytes of the PT_NOTE segment pr that a file of size
// bytes holds, so that no note header can claim more than that.
func noteReader(pr *elf.Prog, size uint64) *io.SectionReader {
	return io.NewSectionReader(pr, 0, int64(min(storedLen(pr.Off, pr.Filesz, size), math.MaxInt64)))
}

// coreReader reads the address range of a block of contiguous segments
// from the core file f.
func coreReader(f io.ReaderAt, block []coreSegment) readFunc {
	return func(dst []byte, addr uint64) (int, error) {
		i := sort.Search(len(block), func(i int) bool { return block[i].End > addr })
		if i == len(block) || addr < block[i].Start {
			return 0, errEnd
		}
		s := block[i]
		rel := addr - s.Start
		if rel >= s.filesz {
			return 0, errEnd
		}
		dst = dst[:min(uint64(len(dst)), s.filesz-rel)]
		n, err := f.ReadAt(dst, int64(s.off+rel))
		switch {
		case err == nil, n > 0 && errors.Is(err, io.EOF):
			return n, nil
		case errors.Is(err, io.EOF):
			return 0, errEnd // a truncated core
		}
		return n, err
	}
}

// coreZeros reports the holes of the core file under the address range of
// a block of contiguous segments.
func coreZeros(h *holeMap, block []coreSegment) zeroFunc {
	return func(addr uint64) uint64 {
		i := sort.Search(len(block), func(i int) bool { return block[i].End > addr })
		if i == len(block) || addr < block[i].Start {
			return 0
		}
		s := block[i]
		rel := addr - s.Start
		if rel >= s.filesz {
			return 0
		}
		return h.zerosAt(s.off+rel, s.filesz-rel)
	}
}

// holeMap answers which parts of a file are holes, remembering the last
// data extent and the last hole it was told about so that a file without
// holes costs two lseek calls in all.
type holeMap struct {
	f          *os.File
	size       uint64
	data, hole span // known extents of file offsets
}

// newHoleMap returns nil when f cannot be examined for holes.
func newHoleMap(f *os.File) *holeMap {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() <= 0 {
		return nil
	}
	if _, _, ok := seekData(f, 0, st.Size()); !ok {
		return nil
	}
	return &holeMap{f: f, size: uint64(st.Size())}
}

// zerosAt returns how many bytes from file offset off on, at most limit, lie
// in a hole: 0 when off holds data, lies past the end of the file or the
// system cannot tell.
func (h *holeMap) zerosAt(off, limit uint64) uint64 {
	if off >= h.size || off > math.MaxInt64 {
		return 0
	}
	in := func(s span) bool { return s.start <= off && off < s.end }
	if !in(h.data) && !in(h.hole) {
		data, hole, ok := seekData(h.f, int64(off), int64(h.size))
		if !ok {
			h.data = span{off, h.size} // read it all from here on
		} else if uint64(data) > off {
			h.hole = span{off, min(uint64(data), h.size)}
		} else {
			h.data = span{off, max(uint64(hole), off+1)}
		}
	}
	if in(h.hole) {
		return min(h.hole.end-off, limit)
	}
	return 0
}

// permsOf renders segment flags the way /proc/PID/maps shows permissions.
func permsOf(fl elf.ProgFlag) string {
	p := []byte("---p")
	if fl&elf.PF_R != 0 {
		p[0] = 'r'
	}
	if fl&elf.PF_W != 0 {
		p[1] = 'w'
	}
	if fl&elf.PF_X != 0 {
		p[2] = 'x'
	}
	return string(p)
}

// fileMapping is one entry of an NT_FILE note.
type fileMapping struct {
	start, end uint64
	offset     uint64 // in bytes
	path       string
}

// ntFile is the note type of the file-mapping table Linux writes into cores
// ("FILE").
const ntFile = 0x46494c45

// maxNoteDesc bounds the NT_FILE note read onto the heap; the kernel's own
// limit is 4 MiB of file names.
const maxNoteDesc = 16 << 20

// coreFiles returns the file mappings listed in the first well-formed
// NT_FILE note of ef, a file of size bytes, or nil. Names are optional
// decoration, so a malformed note is ignored rather than failing the scan.
func coreFiles(ef *elf.File, size uint64) []fileMapping {
	for _, pr := range ef.Progs {
		if pr.Type != elf.PT_NOTE {
			continue
		}
		align := uint64(4)
		if pr.Align == 8 {
			align = 8
		}
		desc := findNote(noteReader(pr, size), ef.ByteOrder, align)
		if desc == nil {
			continue
		}
		word := 8
		if ef.Class == elf.ELFCLASS32 {
			word = 4
		}
		if fms := parseNTFile(desc, ef.ByteOrder, word); fms != nil {
			return fms
		}
	}
	return nil
}

// findNote walks the notes in r and returns the descriptor of the first
// "CORE" note of type NT_FILE, or nil. Other notes are skipped without
// being read: they hold registers and the command line, which have no
// business on the heap.
func findNote(r *io.SectionReader, bo binary.ByteOrder, align uint64) []byte {
	var desc []byte
	walkNotes(r, bo, align, func(typ uint32, off, size uint64) bool {
		if typ != ntFile || size > maxNoteDesc {
			return true
		}
		desc = make([]byte, size)
		if _, err := r.ReadAt(desc, int64(off)); err != nil {
			desc = nil
		}
		return false
	})
	return desc
}

// walkNotes calls fn with the type and the offset and size in r of the
// descriptor of each "CORE" note in r, in order, until fn returns false or
// a note runs past the end of r. It reads the note headers and names only.
func walkNotes(r *io.SectionReader, bo binary.ByteOrder, align uint64, fn func(typ uint32, off, size uint64) bool) {
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	var off uint64
	size := uint64(r.Size())
	var hdr [12]byte
	for off+12 <= size {
		if _, err := r.ReadAt(hdr[:], int64(off)); err != nil {
			return
		}
		namesz := uint64(bo.Uint32(hdr[0:]))
		descsz := uint64(bo.Uint32(hdr[4:]))
		typ := bo.Uint32(hdr[8:])
		nameOff := off + 12
		descOff := nameOff + pad(namesz)
		next := descOff + pad(descsz)
		if next > size {
			return
		}
		if namesz == 5 {
			var name [5]byte
			if _, err := r.ReadAt(name[:], int64(nameOff)); err != nil {
				return
			}
			if string(name[:]) == "CORE\x00" && !fn(typ, descOff, descsz) {
				return
			}
		}
		off = next
	}
}

// parseNTFile decodes an NT_FILE descriptor: count and page size, count
// (start, end, offset in pages) triples, then count NUL-terminated names, all
// words of the core's class. It returns nil when the descriptor does not add
// up: a page size that is not a power of two, an offset past 2^64, or
// entries out of address order or overlapping, which the kernel, listing
// the mappings in order, never writes (coreSegments relies on the order).
func parseNTFile(desc []byte, bo binary.ByteOrder, word int) []fileMapping {
	w := uint64(word)
	get := func(i uint64) uint64 {
		if word == 4 {
			return uint64(bo.Uint32(desc[i*w:]))
		}
		return bo.Uint64(desc[i*w:])
	}
	n := uint64(len(desc))
	if n < 2*w {
		return nil
	}
	count, pageSize := get(0), get(1)
	if count == 0 || count > (n-2*w)/(3*w) || pageSize == 0 || pageSize&(pageSize-1) != 0 {
		return nil
	}
	// Names are cut one at a time: splitting the rest at every NUL would
	// take a slice header per NUL, 24 times the note for one of NULs.
	names := desc[(2+3*count)*w:]
	fms := make([]fileMapping, count)
	for i := range count {
		name, rest, found := bytes.Cut(names, []byte{0})
		if !found && i < count-1 {
			return nil // names missing; the last may be unterminated
		}
		names = rest
		pgoff := get(4 + 3*i)
		if pgoff > math.MaxUint64/pageSize {
			return nil
		}
		fms[i] = fileMapping{
			start:  get(2 + 3*i),
			end:    get(3 + 3*i),
			offset: pgoff * pageSize,
			path:   string(name),
		}
		if fms[i].end < fms[i].start || i > 0 && fms[i].start < fms[i-1].end {
			return nil
		}
	}
	return fms
}

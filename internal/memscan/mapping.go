package memscan

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Mapping describes one memory mapping of a process, or one loadable segment
// of a core file.
type Mapping struct {
	Start, End uint64 // [Start, End)
	Perms      string // e.g. "rw-p" as in /proc/PID/maps
	Offset     uint64 // offset of Start in the mapped file
	Path       string // file path, or "[heap]", "[stack]", "[vdso]", "" for anonymous
	Locked     bool   // VmFlags "lo" from /proc/PID/smaps (unknown for core files: false)
	DontDump   bool   // VmFlags "dd"
}

// Name returns m.Path, or "anon" when the mapping has no path.
func (m Mapping) Name() string {
	if m.Path == "" {
		return "anon"
	}
	return m.Path
}

// contains reports whether addr lies in [m.Start, m.End).
func (m Mapping) contains(addr uint64) bool { return m.Start <= addr && addr < m.End }

// Hit is one occurrence of a pattern.
type Hit struct {
	Addr    uint64  // address of the first byte of the match
	Mapping Mapping // the mapping holding Addr; the match may run on into the next mapping if the two are contiguous
}

// vma is a Mapping with what the process scanner learns from smaps.
type vma struct {
	Mapping
	resident      uint64 // bytes in RAM or in swap: Rss + Swap
	residentKnown bool   // false when smaps had no entry for the mapping
}

// span is a half-open address range.
type span struct{ start, end uint64 }

// smapsEntry is what smaps adds to a line of maps.
type smapsEntry struct {
	locked, dontDump bool
	resident         uint64
}

// parseProcMaps parses the text of /proc/PID/maps and merges in the text of
// /proc/PID/smaps (nil when unavailable). The two files are read at different
// moments, so a mapping that changed in between simply goes without smaps
// data instead of failing the parse.
func parseProcMaps(maps, smaps io.Reader) ([]vma, error) {
	var vs []vma
	err := eachLine(maps, func(line string) error {
		m, err := parseMapsLine(line)
		if err != nil {
			return err
		}
		vs = append(vs, vma{Mapping: m})
		return nil
	})
	if err != nil || smaps == nil {
		return vs, err
	}
	entries, err := parseSmaps(smaps)
	if err != nil {
		return nil, err
	}
	for i := range vs {
		e, ok := entries[span{vs[i].Start, vs[i].End}]
		if !ok {
			continue
		}
		vs[i].Locked, vs[i].DontDump = e.locked, e.dontDump
		vs[i].resident, vs[i].residentKnown = e.resident, true
	}
	return vs, nil
}

// parseMapsLine parses one line of /proc/PID/maps:
//
//	7f2f1c5f0000-7f2f1c616000 r--p 00000000 fe:00 326269    /usr/lib/libc.so.6
//
// The path is everything after the inode and its padding, spaces and all,
// and may be absent.
func parseMapsLine(line string) (Mapping, error) {
	var f [5]string
	rest := line
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		f[i], rest, _ = strings.Cut(rest, " ")
		if f[i] == "" {
			return Mapping{}, fmt.Errorf("%w: too few fields: %q", ErrBadMaps, line)
		}
	}
	start, end, ok := parseRange(f[0])
	if !ok {
		return Mapping{}, fmt.Errorf("%w: bad address range: %q", ErrBadMaps, line)
	}
	if !validPerms(f[1]) {
		return Mapping{}, fmt.Errorf("%w: bad permissions: %q", ErrBadMaps, line)
	}
	off, err := strconv.ParseUint(f[2], 16, 64)
	if err != nil {
		return Mapping{}, fmt.Errorf("%w: bad offset: %q", ErrBadMaps, line)
	}
	return Mapping{
		Start:  start,
		End:    end,
		Perms:  f[1],
		Offset: off,
		Path:   strings.TrimLeft(rest, " "),
	}, nil
}

// parseRange parses "start-end" in hex and insists on start < end.
func parseRange(s string) (start, end uint64, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(a, 16, 64)
	end, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil || start >= end {
		return 0, 0, false
	}
	return start, end, true
}

// validPerms accepts the four-letter permission field of maps, such as
// "r-xp" or "rw-s".
func validPerms(p string) bool {
	return len(p) == 4 &&
		(p[0] == 'r' || p[0] == '-') &&
		(p[1] == 'w' || p[1] == '-') &&
		(p[2] == 'x' || p[2] == '-') &&
		(p[3] == 'p' || p[3] == 's')
}

// parseSmaps parses /proc/PID/smaps: maps-style header lines, each followed
// by "Key: value" lines. Only Rss, Swap and VmFlags are kept; keys this
// parser does not know are skipped, since the kernel adds new ones now and
// then.
func parseSmaps(r io.Reader) (map[span]smapsEntry, error) {
	entries := make(map[span]smapsEntry)
	var cur *smapsEntry
	var curSpan span
	flush := func() {
		if cur != nil {
			entries[curSpan] = *cur
		}
	}
	err := eachLine(r, func(line string) error {
		key, val, isField := strings.Cut(line, ":")
		// A header's first field is a range like "7f00-7f10", a field's
		// key is a word like "Rss"; dev "fe:00" is why the range is
		// tried first.
		first, _, _ := strings.Cut(line, " ")
		if start, end, ok := parseRange(first); ok {
			if _, err := parseMapsLine(line); err != nil {
				return err
			}
			flush()
			cur, curSpan = &smapsEntry{}, span{start, end}
			return nil
		}
		if !isField || cur == nil || strings.ContainsAny(key, " \t") {
			return fmt.Errorf("%w: unexpected smaps line: %q", ErrBadMaps, line)
		}
		switch key {
		case "Rss", "Swap":
			kb, err := parseKB(val)
			if err != nil {
				return fmt.Errorf("%w: bad %s: %q", ErrBadMaps, key, line)
			}
			cur.resident += kb << 10
		case "VmFlags":
			for _, fl := range strings.Fields(val) {
				switch fl {
				case "lo":
					cur.locked = true
				case "dd":
					cur.dontDump = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	flush()
	return entries, nil
}

// parseKB parses a smaps size such as "   1024 kB".
func parseKB(val string) (uint64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(val), " ")
	if unit != "kB" {
		return 0, fmt.Errorf("unit %q", unit)
	}
	return strconv.ParseUint(num, 10, 64)
}

// eachLine calls fn for every non-empty line of r, stopping at the first
// error.
func eachLine(r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	// A path can be PATH_MAX long, and the kernel escapes odd bytes to
	// four characters each.
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("memscan: reading maps: %w", err)
	}
	return nil
}

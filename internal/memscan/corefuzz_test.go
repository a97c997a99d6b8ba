package memscan

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
)

// FuzzOpenCore feeds arbitrary bytes to the core-file reader the way
// `memshuffle scan -core` does: CoreMaps, then ScanCoreAll, then OpenCore
// with ReadAt at every hit, Threads and SignalFrameAt. A file that is not
// a core must be refused with ErrNotCore; one that is accepted must be
// scanned without a panic, and its hits must read back as the pattern.
func FuzzOpenCore(f *testing.F) {
	skipWithoutCoreScan(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "core")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		checkCoreFile(t, path)
	})
}

// fuzzPatterns are what checkCoreFile scans for: words the seeds hold,
// an ELF magic a real core's first segment holds, and one all-zero
// pattern, which takes the scanner's other path through zeros.
var fuzzPatterns = [][]byte{[]byte("core-secret"), []byte("\x7fELF"), make([]byte, 3)}

// checkCoreFile runs the reader over the file at path and checks that it
// either refuses it as no core or gives consistent answers.
func checkCoreFile(t *testing.T, path string) {
	t.Helper()
	ms, err := CoreMaps(path)
	if err != nil {
		if !errors.Is(err, ErrNotCore) {
			t.Fatalf("CoreMaps: %v, want ErrNotCore or nil", err)
		}
		if c, err := OpenCore(path); !errors.Is(err, ErrNotCore) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("OpenCore after CoreMaps refused the file: %v", err)
		}
		return
	}
	for i, m := range ms {
		if m.Start >= m.End || i > 0 && ms[i-1].Start > m.Start {
			t.Fatalf("mapping %d [%#x, %#x) out of order or empty", i, m.Start, m.End)
		}
	}

	ps := make([]*Pattern, len(fuzzPatterns))
	for i, b := range fuzzPatterns {
		ps[i] = mustPattern(t, b)
	}
	hits, err := ScanCoreAll(path, ps)
	if err != nil {
		t.Fatalf("ScanCoreAll of a file CoreMaps accepted: %v", err)
	}

	c, err := OpenCore(path)
	if err != nil {
		t.Fatalf("OpenCore of a file CoreMaps accepted: %v", err)
	}
	defer c.Close()
	for i, hs := range hits {
		// The all-zero pattern may hit at every byte: check a few.
		for _, h := range hs[:min(len(hs), 64)] {
			if !h.Mapping.contains(h.Addr) {
				t.Fatalf("hit at %#x outside its mapping [%#x, %#x)", h.Addr, h.Mapping.Start, h.Mapping.End)
			}
			got := make([]byte, len(fuzzPatterns[i]))
			if err := c.ReadAt(got, h.Addr); err != nil {
				t.Fatalf("ReadAt(%#x) of a hit: %v", h.Addr, err)
			}
			if !bytes.Equal(got, fuzzPatterns[i]) {
				t.Fatalf("ReadAt(%#x) of a hit = %q, want %q", h.Addr, got, fuzzPatterns[i])
			}
		}
	}
	for _, m := range ms[:min(len(ms), 16)] {
		var b [16]byte
		if err := c.ReadAt(b[:], m.Start); err != nil && !errors.Is(err, ErrNotDumped) {
			t.Fatalf("ReadAt(%#x): %v", m.Start, err)
		}
	}

	ts, err := c.Threads()
	if err != nil && !errors.Is(err, ErrCoreArch) && !errors.Is(err, ErrNotCore) {
		t.Fatalf("Threads: %v", err)
	}
	// SignalFrameAt reads up to 64*512 words per call, so only a few
	// addresses: the threads' stack pointers and the first hit.
	var addrs []uint64
	for _, th := range ts[:min(len(ts), 2)] {
		addrs = append(addrs, th.RSP)
	}
	if len(hits[0]) > 0 {
		addrs = append(addrs, hits[0][0].Addr)
	}
	for _, a := range addrs {
		fr, err := c.SignalFrameAt(a)
		switch {
		case errors.Is(err, ErrNoSignalFrame), errors.Is(err, ErrCoreArch):
		case err != nil:
			t.Fatalf("SignalFrameAt(%#x): %v", a, err)
		case fr.FPState > a || a-fr.FPState >= sigframeReach || fr.Addr >= fr.FPState ||
			fr.StackHi < fr.StackLo || fr.Addr < fr.StackLo:
			t.Fatalf("SignalFrameAt(%#x) = %v: inconsistent", a, fr)
		default:
			fr.HandledBy(ts)
			_ = fr.String()
		}
	}
}

// FuzzBuiltCore complements FuzzOpenCore, whose random bytes seldom get
// past the ELF header: it builds well-formed cores (coretest.Build) of one
// to four segments of fuzzed sizes, some with more memory than file bytes,
// and plants a fuzzed pattern in one of them. The reader must list every
// segment where it was built and find the pattern where it was planted,
// besides what checkCoreFile holds any core to.
func FuzzBuiltCore(f *testing.F) {
	skipWithoutCoreScan(f)
	f.Add(uint8(0), uint16(100), uint16(0), uint16(7), []byte("core-secret"))
	f.Add(uint8(3), uint16(5000), uint16(4096), uint16(4999), []byte{0, 0, 0})
	f.Add(uint8(1), uint16(1), uint16(1), uint16(0), []byte{0xaa})
	f.Fuzz(func(t *testing.T, nseg uint8, size, extra, off uint16, pat []byte) {
		if len(pat) == 0 || len(pat) > 64 {
			return
		}
		n, sz := 1+int(nseg%4), max(int(size%8192), len(pat))
		var segs []coretest.Segment
		vaddr := uint64(0x400000)
		for range n {
			memsz := uint64(sz) + uint64(extra%4096)
			segs = append(segs, coretest.Segment{Vaddr: vaddr, Flags: elf.PF_R | elf.PF_W, Data: bytes.Repeat([]byte{0xaa}, sz), Memsz: memsz})
			vaddr = (vaddr + memsz + 2*4096) &^ 4095
		}
		k, at := int(off)%n, int(off)%(sz-len(pat)+1)
		copy(segs[k].Data[at:], pat)
		path := filepath.Join(t.TempDir(), "core")
		if err := os.WriteFile(path, coretest.Build(elf.ET_CORE, segs, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		checkCoreFile(t, path)
		ms, err := CoreMaps(path)
		if err != nil || len(ms) != n {
			t.Fatalf("CoreMaps: %d mappings, %v; built %d", len(ms), err, n)
		}
		for i, m := range ms {
			if s := segs[i]; m.Start != s.Vaddr || m.End != s.Vaddr+s.Memsz {
				t.Fatalf("mapping %d [%#x, %#x), built [%#x, %#x)", i, m.Start, m.End, s.Vaddr, s.Vaddr+s.Memsz)
			}
		}
		hits, err := ScanCore(path, mustPattern(t, pat))
		if err != nil {
			t.Fatal(err)
		}
		want := segs[k].Vaddr + uint64(at)
		if !slices.ContainsFunc(hits, func(h Hit) bool { return h.Addr == want }) {
			t.Fatalf("the pattern planted at %#x not found: %d hits", want, len(hits))
		}
	})
}

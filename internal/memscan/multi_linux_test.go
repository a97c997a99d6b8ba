//go:build linux

package memscan

import (
	"crypto/rand"
	"debug/elf"
	"errors"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// punchZeros turns the page-aligned all-zero stretches of data, stored at
// file offset off in the file at path, into holes, and returns how many
// bytes it punched (0 where the file system cannot punch holes).
func punchZeros(t testing.TB, path string, off uint64, data []byte) int {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	punched := 0
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off)+int64(start), int64(end-start))
			if err == nil {
				punched += end - start
			}
		}
		start = -1
	}
	// Pages of the file, not of the segment.
	first := int((off+4095)&^4095 - off)
	i := first
	for ; i+4096 <= len(data); i += 4096 {
		if slices.ContainsFunc(data[i:i+4096], func(c byte) bool { return c != 0 }) {
			flush(i)
		} else if start < 0 {
			start = i
		}
	}
	flush(i)
	return punched
}

// TestScanCoreAllSparse punches holes into a core file and checks that the
// hole map sees them and that matches next to them are still found.
func TestScanCoreAllSparse(t *testing.T) {
	t.Parallel()
	data := make([]byte, 8<<20)
	rand.Read(data[:64<<10])
	rand.Read(data[len(data)-(64<<10):])
	secret := []byte("0123456789abcdef0123456789abcdef")
	copy(data[(64<<10)-7:], secret)           // runs into the first hole
	copy(data[len(data)-(64<<10)-3:], secret) // runs out of the last one
	copy(data[4<<20:], secret)                // alone in the middle
	path := writeCore(t, elf.ET_CORE, []testSegment{{vaddr: 1 << 30, flags: elf.PF_R | elf.PF_W, data: data}}, nil)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	segOff := uint64(st.Size()) - uint64(len(data))
	holes := punchZeros(t, path, segOff, data)

	ps := []*Pattern{mustPattern(t, secret), mustPattern(t, secret[:16]), mustPattern(t, []byte("absent"))}
	all, err := ScanCoreAll(path, ps)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{secret, secret[:16], []byte("absent")} {
		var got []uint64
		for _, h := range all[i] {
			got = append(got, h.Addr-(1<<30))
		}
		var want []uint64
		for _, off := range naiveMatches(data, b) {
			want = append(want, uint64(off))
		}
		if !slices.Equal(got, want) {
			t.Errorf("pattern %d: hits %v, want %v", i, got, want)
		}
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := newHoleMap(f)
	if h == nil || holes == 0 {
		t.Skip("no hole support here: holes punched", holes)
	}
	z := h.zerosAt(segOff+(1<<20), 1<<40)
	if z == 0 {
		t.Skip("file system reports no holes")
	}
	if z > uint64(len(data)) {
		t.Errorf("hole of %d bytes in a file of %d", z, st.Size())
	}
	if z := h.zerosAt(segOff+10, 1<<40); z != 0 {
		t.Errorf("data reported as a hole of %d bytes", z)
	}
	if z := h.zerosAt(segOff+(1<<20), 5); z != 5 {
		t.Errorf("limit not applied: %d", z)
	}
	if z := h.zerosAt(uint64(st.Size()), 1<<40); z != 0 {
		t.Errorf("a hole past the end of the file: %d", z)
	}
}

// TestScanProcessAllSelf plants secrets of different lengths in the test
// process and checks ScanProcessAll against ScanProcess for each, and that
// each is found exactly once.
func TestScanProcessAllSelf(t *testing.T) {
	region := mapRegion(t, 64*4096)
	for i := 0; i < len(region); i += 4096 {
		region[i] = 1 // populate every page
	}
	short := region[4096-5 : 4096+11]          // across a page boundary
	long := region[20*4096-300 : 20*4096+1700] // 2000 bytes
	mid := region[40*4096+64 : 40*4096+96]
	ps := []*Pattern{plantSecret(t, short), plantSecret(t, long), plantSecret(t, mid)}
	// Untouched neighbours: the last page of region is never written, so
	// a zero pattern there must not show up beyond what ScanProcess says.
	all, err := ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{short, long, mid} {
		wantOneHit(t, all[i], addrOf(b))
		// Other tests map memory meanwhile, so the mapping around a hit
		// may have grown between the scans: compare the addresses.
		addrs := func(hs []Hit) []uint64 {
			var as []uint64
			for _, h := range hs {
				as = append(as, h.Addr)
			}
			return as
		}
		one := scanSelf(t, ps[i])
		if !slices.Equal(addrs(one), addrs(all[i])) {
			t.Errorf("pattern %d: ScanProcess %+v, ScanProcessAll %+v", i, one, all[i])
		}
	}
	clear(region)
	all, err = ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if len(all[i]) != 0 {
			t.Errorf("after wiping: pattern %d hits %+v", i, all[i])
		}
	}
}

func TestScanAllErrors(t *testing.T) {
	t.Parallel()
	p := mustPattern(t, []byte("x"))
	if _, err := ScanProcessAll(os.Getpid(), []*Pattern{p, nil}); !errors.Is(err, ErrEmptyPattern) {
		t.Errorf("ScanProcessAll(nil pattern): %v", err)
	}
	if _, err := ScanProcessAll(0, []*Pattern{p}); !errors.Is(err, ErrInvalidPID) {
		t.Errorf("ScanProcessAll(pid 0): %v", err)
	}
	if hits, err := ScanProcessAll(os.Getpid(), nil); err != nil || len(hits) != 0 {
		t.Errorf("ScanProcessAll(no patterns) = %v, %v", hits, err)
	}
	if _, err := ScanCoreAll("does-not-matter", []*Pattern{p, {}}); !errors.Is(err, ErrEmptyPattern) {
		t.Errorf("ScanCoreAll(zero pattern): %v", err)
	}
	core := writeCore(t, elf.ET_CORE, []testSegment{{vaddr: 0x1000, data: []byte("xx")}}, nil)
	if hits, err := ScanCoreAll(core, nil); err != nil || len(hits) != 0 {
		t.Errorf("ScanCoreAll(no patterns) = %v, %v", hits, err)
	}
	if _, err := ScanCoreAll(core+".missing", []*Pattern{p}); err == nil {
		t.Error("ScanCoreAll(missing file): no error")
	}
	_ = rand.Read
}

// TestScanProcessWithoutMemory: a process with no user memory, as a kernel
// thread has, is scanned as having none: no hits and no error. Its mem
// file does not open (ESRCH), and the scan failed with "no such process"
// for a process that was there.
func TestScanProcessWithoutMemory(t *testing.T) {
	// kthreadd, the kernel threads' parent, is process 2 where the
	// kernel's process IDs are visible; in a namespace of its own it may
	// be absent, or be another process.
	comm, err := os.ReadFile("/proc/2/comm")
	if err != nil || string(comm) != "kthreadd\n" {
		t.Skip("no kthreadd at process 2 here")
	}
	ms, err := Maps(2)
	if err != nil || len(ms) != 0 {
		t.Skipf("process 2 has %d mappings (%v)", len(ms), err)
	}
	p, err := NewPattern([]byte{0})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ScanProcessAll(2, []*Pattern{p, p})
	if err != nil || len(res) != 2 || res[0] != nil || res[1] != nil {
		t.Errorf("ScanProcessAll of a kernel thread: %v, %v; want two empty results", res, err)
	}
	if hits, err := ScanProcess(2, p); err != nil || hits != nil {
		t.Errorf("ScanProcess of a kernel thread: %v, %v; want no hit and no error", hits, err)
	}
}

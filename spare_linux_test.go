package memshuffle

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"golang.org/x/sys/unix"
)

// vmFlags returns the smaps VmFlags of the mapping that holds b[0].
func vmFlags(t *testing.T, b []byte) []string {
	t.Helper()
	fl, _ := smapsOf(t, b)
	return fl
}

// smapsOf returns the smaps VmFlags and Rss, in bytes, of the mapping that
// holds b[0].
func smapsOf(t *testing.T, b []byte) (flags []string, rss int64) {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	a := uint64(uintptr(unsafe.Pointer(&b[0])))
	in := false
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			lo, hi, _ := strings.Cut(f[0], "-")
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && l <= a && a < h
		case in && len(f) == 3 && f[0] == "Rss:":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			rss = kb << 10
		case in && len(f) > 0 && f[0] == "VmFlags:":
			return f[1:], rss
		}
	}
	t.Fatalf("no mapping holds %#x in smaps", a)
	return nil, 0
}

// TestSpareHardened: a spare the background shuffler maps ahead is out of
// core dumps ("dd") and kept from a forked child before any step
// writes an entry into it, on both of mapSpare's paths (faulted in a piece
// at a time, and secret memory), and it is locked as the lock mode asks.
// The control, an anonymous mapping of our own, has neither flag: the
// check can fail.
func TestSpareHardened(t *testing.T) {
	plain, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	if fl := vmFlags(t, plain); slices.Contains(fl, "dd") || slices.Contains(fl, "wf") {
		t.Fatalf("control mapping already has %v", fl)
	}
	if err := unix.Munmap(plain); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		opts   []Option
		secret bool
	}{
		{"best-effort", []Option{WithLockMode(LockBestEffort)}, false},
		{"none", []Option{WithLockMode(LockNone)}, false},
		{"strict", []Option{WithLockMode(LockStrict)}, false},
		{"secret", []Option{WithSecretMemory()}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newOrSkip(t, c.opts...)
			r := spareOrSkip(t, s, 1<<20)
			// A forked child sees zeros ("wf", private mappings) or no
			// mapping at all ("dc", secret memory, which is shared).
			fl := vmFlags(t, r.Data)
			if !slices.Contains(fl, "dd") || !slices.Contains(fl, "wf") && !slices.Contains(fl, "dc") {
				t.Errorf("spare VmFlags %v: want dd, and wf or dc", fl)
			}
			if !r.DontDump {
				t.Error("spare not marked DontDump")
			}
			// Secret memory is locked by the kernel without VM_LOCKED on
			// every kernel; the region says it is locked either way.
			if wantLocked := c.secret || s.cfg.lock != LockNone; r.Locked != wantLocked && r.LockErr == nil {
				t.Errorf("spare locked %v, want %v", r.Locked, wantLocked)
			}
			if !c.secret && r.Locked && !slices.Contains(fl, "lo") {
				t.Errorf("spare said locked, VmFlags %v", fl)
			}
		})
	}
}

// TestSpareFaultedIn: mapSpare has the system back every page of a spare
// before it returns, so that the step that adopts it writes into memory
// that is there instead of faulting it in, a page at a time, under the
// shard lock; secret memory included, whose faults also take each page
// out of the kernel's direct map. The control, a spare's worth of the
// same memory mapped and not touched, has no pages: the check can fail.
func TestSpareFaultedIn(t *testing.T) {
	const n = 1 << 20
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"secret", []Option{WithSecretMemory()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newOrSkip(t, c.opts...)
			untouched, err := osmem.Map(n, osmem.Flags{Secret: s.cfg.secret, SmallPages: true})
			if err != nil {
				t.Skip(err)
			}
			_, rss := smapsOf(t, untouched.Data)
			if err := osmem.Unmap(untouched); err != nil {
				t.Fatal(err)
			}
			if rss != 0 {
				t.Fatalf("control: an untouched region has %d bytes resident", rss)
			}
			r := spareOrSkip(t, s, n)
			if _, rss := smapsOf(t, r.Data); rss < int64(len(r.Data)) {
				t.Errorf("%d of the spare's %d bytes resident", rss, len(r.Data))
			}
		})
	}
}

// spareOrSkip maps a spare of n bytes for s, unmapped at the end of the
// test; it skips where the system will not lock it.
func spareOrSkip(t *testing.T, s *Shuffler, n int) *osmem.Region {
	t.Helper()
	r, err := s.mapSpare(context.Background(), n, nil)
	if errors.Is(err, ErrLockFailed) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.aux.Unmap(r); err != nil {
			t.Error(err)
		}
	})
	return r
}

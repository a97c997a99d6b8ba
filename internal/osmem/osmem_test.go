package osmem

import (
	"errors"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

func TestMapZeroedAndHardened(t *testing.T) {
	for _, n := range []int{1, 4096, 5000, 8 << 20} {
		r, err := Map(n, Flags{Lock: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Data) < n || len(r.Data)%PageSize() != 0 {
			t.Fatalf("Map(%d): %d bytes", n, len(r.Data))
		}
		for i, b := range r.Data {
			if b != 0 {
				t.Fatalf("Map(%d): byte %d is %d", n, i, b)
			}
		}
		r.Data[0], r.Data[len(r.Data)-1] = 1, 1
		if runtime.GOOS == "linux" {
			checkMaps(t, r)
		}
		Wipe(r.Data)
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
		if err := Unmap(r); err != nil {
			t.Fatal("second Unmap:", err)
		}
	}
}

// checkMaps looks the region up in /proc/self/maps: read-write, excluded
// from dumps, and flanked by inaccessible guard pages.
func checkMaps(t *testing.T, r *Region) {
	t.Helper()
	ms, err := memscan.Maps(os.Getpid())
	if err != nil {
		t.Skip(err)
	}
	start := uint64(uintptr(unsafe.Pointer(&r.Data[0])))
	end := start + uint64(len(r.Data))
	var before, data, after *memscan.Mapping
	for i := range ms {
		m := &ms[i]
		switch {
		case m.Start <= start && start < m.End:
			data = m
		case m.End == start:
			before = m
		case m.Start == end:
			after = m
		}
	}
	if data == nil || data.End < end || data.Perms[:2] != "rw" || !data.DontDump {
		t.Fatalf("data mapping %+v", data)
	}
	if r.Locked != data.Locked {
		t.Fatalf("Region.Locked %v, smaps says %v", r.Locked, data.Locked)
	}
	if !vmFlag(t, data.Start, "wf") {
		t.Fatal("mapping lacks MADV_WIPEONFORK (wf)")
	}
	for _, g := range []*memscan.Mapping{before, after} {
		if g == nil || g.Perms[:3] != "---" {
			t.Fatalf("guard page missing: %+v", g)
		}
	}
}

func TestMapErrors(t *testing.T) {
	for _, n := range []int{0, -1, math.MaxInt} {
		if _, err := Map(n, Flags{}); err == nil {
			t.Fatalf("Map(%d) succeeded", n)
		}
	}
	for _, op := range []Op{OpMap, OpProtect, OpLock} {
		SetFault(func(o Op) error {
			if o == op {
				return ErrInjected
			}
			return nil
		})
		_, err := Map(4096, Flags{StrictLock: true})
		SetFault(nil)
		if !errors.Is(err, ErrInjected) {
			t.Fatalf("%v fault: %v", op, err)
		}
	}
	// A refused lock without StrictLock is reported, not fatal.
	SetFault(func(o Op) error {
		if o == OpLock {
			return ErrInjected
		}
		return nil
	})
	r, err := Map(4096, Flags{Lock: true})
	SetFault(nil)
	if err != nil || r.Locked || !errors.Is(r.LockErr, ErrInjected) {
		t.Fatalf("best-effort lock: %v %+v", err, r)
	}
	Unmap(r)
}

// TestSecretMemory: a secret region holds data, is locked, is left out of
// forked children, and has an inaccessible guard mapping on each side, as
// an arena does.
func TestSecretMemory(t *testing.T) {
	r, err := Map(3*PageSize(), Flags{Secret: true, Lock: true})
	if errors.Is(err, ErrNoSecret) || errors.Is(err, ErrLock) {
		t.Skip(err) // ErrLock: RLIMIT_MEMLOCK, which secret memory counts against, holds no 3 pages
	}
	if err != nil {
		t.Fatal(err)
	}
	r.Data[0], r.Data[len(r.Data)-1] = 7, 9
	if r.Data[0] != 7 || r.Data[1] != 0 {
		t.Fatal("secret memory does not hold data")
	}
	if runtime.GOOS == "linux" {
		ms, _ := memscan.Maps(os.Getpid())
		a := uint64(uintptr(unsafe.Pointer(&r.Data[0])))
		end := a + uint64(len(r.Data))
		guards := 0
		for _, m := range ms {
			// An over-read or over-write of the region faults, as it
			// does at an arena's ends.
			if (m.End == a || m.Start == end) && m.Perms[:3] == "---" {
				guards++
			}
			if m.Start <= a && a < m.End {
				t.Logf("secret mapping: %+v", m)
				if m.Path == "" || m.Perms[:2] != "rw" || !m.Locked || !r.Locked {
					t.Fatalf("unexpected mapping %+v", m)
				}
				// Secret memory is a shared mapping, which the kernel does
				// not wipe on fork: a forked child must not get it at all
				// ("dc", MADV_DONTFORK), or it shares the parent's secrets.
				if !vmFlag(t, m.Start, "dc") && !vmFlag(t, m.Start, "wf") {
					t.Error("a forked child would share the secret mapping: no dc or wf in its VmFlags")
				}
			}
		}
		if guards != 2 {
			t.Errorf("%d inaccessible guard mappings beside the secret region, want one on each side", guards)
		}
	}
	Wipe(r.Data)
	if err := Unmap(r); err != nil {
		t.Fatal(err)
	}
}

// vmFlag reports whether the smaps entry of the mapping at start has flag.
func vmFlag(t *testing.T, start uint64, flag string) bool {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, _, _ := strings.Cut(f[0], "-")
			v, err := strconv.ParseUint(lo, 16, 64)
			in = err == nil && v == start
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return slices.Contains(strings.Fields(line)[1:], flag)
		}
	}
	return false
}

// TestSmallPages checks that SmallPages regions are marked for base pages
// only ("nh" in smaps) while a region of the same size without it asks for
// huge pages ("hg"): the control shows the flag check can fail.
func TestSmallPages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("transparent huge pages are Linux's")
	}
	for _, c := range []struct {
		small     bool
		want, not string
	}{{true, "nh", "hg"}, {false, "hg", "nh"}} {
		r, err := Map(8<<20, Flags{SmallPages: c.small})
		if err != nil {
			t.Fatal(err)
		}
		start := uint64(uintptr(unsafe.Pointer(&r.Data[0])))
		if !vmFlag(t, start, c.want) || vmFlag(t, start, c.not) {
			t.Errorf("SmallPages=%v: want VmFlags with %q and without %q", c.small, c.want, c.not)
		}
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
	}
}

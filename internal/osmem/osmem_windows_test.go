//go:build windows

package osmem

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"
)

// memFree is MEM_FREE, the state VirtualQuery reports for released address
// space; x/sys/windows does not define it.
const memFree = 0x10000

func query(t *testing.T, addr uintptr) windows.MemoryBasicInformation {
	t.Helper()
	var mbi windows.MemoryBasicInformation
	if err := windows.VirtualQuery(addr, &mbi, unsafe.Sizeof(mbi)); err != nil {
		t.Fatalf("VirtualQuery(%#x): %v", addr, err)
	}
	return mbi
}

// underWine reports whether the process runs under Wine, which exports
// wine_get_version from its ntdll.
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// werExclusion reports whether this Windows has
// WerRegisterExcludedMemoryBlock (10 version 1703 and later; not Wine).
func werExclusion() bool { return procWerRegisterExcludedMemory.Find() == nil }

func dataAddr(r *Region) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(r.Data))) }

// TestWindowsGuardPages checks the layout VirtualQuery sees: one
// allocation, read-write data flanked by committed PAGE_NOACCESS pages, and
// nothing left of it after Unmap.
func TestWindowsGuardPages(t *testing.T) {
	ps := uintptr(PageSize())
	for _, n := range []int{1, 4096, 5000, 8 << 20} {
		t.Run(fmt.Sprintf("size=%d", n), func(t *testing.T) {
			r, err := Map(n, Flags{})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Data) < n || len(r.Data)%PageSize() != 0 {
				t.Fatalf("Map(%d): %d bytes", n, len(r.Data))
			}
			for i, b := range r.Data {
				if b != 0 {
					t.Fatalf("byte %d is %d", i, b)
				}
			}
			r.Data[0], r.Data[len(r.Data)-1] = 1, 1
			if want := werExclusion(); r.DontDump != want {
				t.Fatalf("Region.DontDump is %v; WerRegisterExcludedMemoryBlock available: %v", r.DontDump, want)
			}

			data := dataAddr(r)
			d := query(t, data)
			if d.State != windows.MEM_COMMIT || d.Protect != windows.PAGE_READWRITE || d.RegionSize < uintptr(len(r.Data)) {
				t.Fatalf("data: %+v", d)
			}
			for _, g := range []uintptr{data - ps, data + uintptr(len(r.Data))} {
				m := query(t, g)
				if m.State != windows.MEM_COMMIT || m.Protect != windows.PAGE_NOACCESS || m.AllocationBase != d.AllocationBase {
					t.Fatalf("guard page at %#x: %+v", g, m)
				}
			}
			if d.AllocationBase != data-ps {
				t.Fatalf("allocation starts at %#x, data at %#x", d.AllocationBase, data)
			}

			Wipe(r.Data)
			base := d.AllocationBase
			if err := Unmap(r); err != nil {
				t.Fatal(err)
			}
			if m := query(t, base); m.State != memFree {
				t.Fatalf("after Unmap: %+v", m)
			}
			if err := Unmap(r); err != nil {
				t.Fatal("second Unmap:", err)
			}
		})
	}
}

// TestWindowsLock locks a region far beyond the default minimum working set
// (a few hundred KiB), which only succeeds through the
// SetProcessWorkingSetSizeEx retry, and checks that every page is resident
// and locked.
func TestWindowsLock(t *testing.T) {
	const n = 16 << 20
	r, err := Map(n, Flags{StrictLock: true})
	if errors.Is(err, windows.ERROR_PRIVILEGE_NOT_HELD) {
		t.Skip("raising the working set needs SeIncreaseWorkingSetPrivilege:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unmap(r) })
	if !r.Locked || r.LockErr != nil {
		t.Fatalf("Locked %v, LockErr %v", r.Locked, r.LockErr)
	}
	ps := PageSize()
	pages := make([]windows.PSAPI_WORKING_SET_EX_INFORMATION, len(r.Data)/ps)
	for i := range pages {
		pages[i].VirtualAddress = windows.Pointer(unsafe.Pointer(&r.Data[i*ps]))
	}
	size := uint32(len(pages)) * uint32(unsafe.Sizeof(pages[0]))
	if err := windows.QueryWorkingSetEx(windows.CurrentProcess(), uintptr(unsafe.Pointer(&pages[0])), size); err != nil {
		t.Fatal("QueryWorkingSetEx:", err)
	}
	// Wine reports residency but never the Locked bit; on Windows both count.
	wine := underWine()
	if wine {
		t.Log("under Wine: checking residency only")
	}
	for i, p := range pages {
		if a := p.VirtualAttributes; !a.Valid() || !a.Locked() && !wine {
			t.Fatalf("page %d of %d: valid %v, locked %v", i, len(pages), a.Valid(), a.Locked())
		}
	}

	// A best-effort lock of a small region still works beside it, and
	// unlocking on Unmap leaves room to lock the same amount again.
	small, err := Map(4096, Flags{Lock: true})
	if err != nil || !small.Locked {
		t.Fatalf("small lock: %v %+v", err, small)
	}
	Unmap(small)
	if err := Unmap(r); err != nil {
		t.Fatal(err)
	}
	again, err := Map(n, Flags{StrictLock: true})
	if err != nil {
		t.Fatal("locking again after Unmap:", err)
	}
	Unmap(again)
}

func TestWindowsUnsupported(t *testing.T) {
	if _, err := Map(4096, Flags{Secret: true}); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("Secret: %v, want ErrNoSecret", err)
	}
	if _, err := Map(0, Flags{}); !errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
		t.Fatalf("Map(0): %v", err)
	}
}

// TestWindowsFaults makes each call fail and checks that Map returns the
// error or reports it, and that a failed Unmap leaves the region intact for
// a retry.
func TestWindowsFaults(t *testing.T) {
	failOn := func(op Op) {
		SetFault(func(o Op) error {
			if o == op {
				return ErrInjected
			}
			return nil
		})
		t.Cleanup(func() { SetFault(nil) })
	}
	for _, c := range []struct {
		op   Op
		f    Flags
		lock bool // the failure is reported in LockErr instead
	}{
		{OpMap, Flags{}, false},
		{OpProtect, Flags{}, false},
		{OpLock, Flags{StrictLock: true}, false},
		{OpLock, Flags{Lock: true}, true},
	} {
		t.Run(fmt.Sprintf("%v/strict=%v", c.op, c.f.StrictLock), func(t *testing.T) {
			failOn(c.op)
			r, err := Map(4096, c.f)
			SetFault(nil)
			if c.lock {
				if err != nil || r.Locked || !errors.Is(r.LockErr, ErrInjected) {
					t.Fatalf("best-effort lock: %v %+v", err, r)
				}
				if err := Unmap(r); err != nil {
					t.Fatal(err)
				}
				return
			}
			if r != nil || !errors.Is(err, ErrInjected) {
				t.Fatalf("got %v %+v, want ErrInjected", err, r)
			}
			if c.op == OpLock && !errors.Is(err, ErrLock) {
				t.Fatalf("strict lock: %v does not wrap ErrLock", err)
			}
		})
	}

	t.Run("advise", func(t *testing.T) {
		failOn(OpAdvise)
		r, err := Map(4096, Flags{})
		SetFault(nil)
		if err != nil || r.DontDump {
			t.Fatalf("failed dump exclusion: %v %+v, want a dumpable region", err, r)
		}
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unmap", func(t *testing.T) {
		r, err := Map(4096, Flags{Lock: true})
		if err != nil {
			t.Fatal(err)
		}
		base := dataAddr(r) - uintptr(PageSize())
		failOn(OpUnmap)
		if err := Unmap(r); !errors.Is(err, ErrInjected) {
			t.Fatalf("Unmap: %v", err)
		}
		SetFault(nil)
		r.Data[0] = 1 // still mapped
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
		if m := query(t, base); m.State != memFree {
			t.Fatalf("after Unmap: %+v", m)
		}
	})
}

// TestWindowsDumpExclusionLimit maps more regions than Windows Error
// Reporting takes registrations for: the ones past its limit must say they
// are dumpable, and unmapping must give the registrations back.
func TestWindowsDumpExclusionLimit(t *testing.T) {
	if !werExclusion() {
		t.Skip("no WerRegisterExcludedMemoryBlock here")
	}
	const n = 2048 // WER_MAX_REGISTERED_ENTRIES is 512 today
	regions := make([]*Region, 0, n)
	t.Cleanup(func() {
		for _, r := range regions {
			Unmap(r)
		}
	})
	excluded := 0
	for range n {
		r, err := Map(4096, Flags{})
		if err != nil {
			t.Fatal(err)
		}
		regions = append(regions, r)
		if r.DontDump {
			excluded++
		}
	}
	t.Logf("%d of %d regions excluded from WER dumps", excluded, n)
	if excluded == 0 {
		t.Fatal("no region was excluded")
	}
	for _, r := range regions {
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
	}
	regions = regions[:0]
	for i := range excluded {
		r, err := Map(4096, Flags{})
		if err != nil {
			t.Fatal(err)
		}
		regions = append(regions, r)
		if !r.DontDump {
			t.Fatalf("after unmapping everything, region %d of %d is dumpable: registrations were not given back", i, excluded)
		}
	}
}

// TestWindowsRefusedReleaseRelocks: Unmap unlocks a region and drops its
// exclusion from dumps before VirtualFree, and a region the release
// refused stays mapped for its owner to use again (an arena keeps taking
// entries until a later release succeeds), so Unmap locks it and excludes
// it again. It used to leave the region unlocked with no LockErr, which
// Relock reads as "never meant to be locked": the arena stayed swappable
// for good. The release is made to fail for real, by asking VirtualFree to
// release from an address inside the allocation rather than its base.
func TestWindowsRefusedReleaseRelocks(t *testing.T) {
	r, err := Map(2*PageSize(), Flags{Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unmap(r) })
	if !r.Locked {
		t.Skip("not locked here:", r.LockErr)
	}
	inner := *r
	inner.start = unsafe.Add(r.start, PageSize())
	if err := Unmap(&inner); err == nil {
		t.Fatal("VirtualFree released from inside an allocation")
	}
	if inner.Data == nil || query(t, dataAddr(&inner)).State == memFree {
		t.Fatal("the refused release freed the region")
	}
	if !inner.Locked || inner.LockedLen != len(inner.Data) || inner.LockErr != nil {
		t.Fatalf("after the refused release: Locked %v, LockedLen %d of %d, LockErr %v; want it locked again",
			inner.Locked, inner.LockedLen, len(inner.Data), inner.LockErr)
	}
	if inner.DontDump != r.DontDump {
		t.Fatalf("after the refused release: DontDump %v, was %v", inner.DontDump, r.DontDump)
	}
}

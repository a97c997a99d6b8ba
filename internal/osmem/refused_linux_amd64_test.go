package osmem

import (
	"errors"
	"os"
	"strconv"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/seccomptest"
	"golang.org/x/sys/unix"
)

// TestLockOnFaultRefusedFallsBack: a system call filter written before
// mlock2 existed (an allowlist whose default answer is EPERM, as older
// container profiles were) refuses mlock2 and allows mlock. LockOnFault
// must then send its caller to Relock, as it does where the kernel has no
// mlock2, not report a refusal to lock: the background shuffler left every
// spare it mapped unlocked under LockBestEffort, and under LockStrict
// refused them all, though mlock would have locked them.
func TestLockOnFaultRefusedFallsBack(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno unix.Errno
	}{{"EPERM", unix.EPERM}, {"ENOSYS", unix.ENOSYS}} {
		t.Run(c.name, func(t *testing.T) {
			if lim := BindingLockLimit(); lim >= 0 && lim < int64(8*pageSize) {
				// Relock must lock the 8 pages, which the filter alone may not refuse.
				t.Skipf("RLIMIT_MEMLOCK %d cannot hold 8 pages", lim)
			}
			rules := []seccomptest.Rule{seccomptest.Refuse(unix.SYS_MLOCK2, c.errno)}
			seccomptest.Run(t, "mlock2-"+c.name, rules, func(t *testing.T) {
				r, err := Map(8*pageSize, Flags{SmallPages: true})
				if err != nil {
					t.Fatal(err)
				}
				defer Unmap(r)
				if err := LockOnFault(r); !errors.Is(err, ErrNoOnFault) {
					t.Fatalf("LockOnFault with mlock2 refused: %v, want ErrNoOnFault", err)
				}
				if r.Locked {
					t.Fatal("a refused lock on fault left the region marked locked")
				}
				if err := Relock(r); err != nil {
					t.Fatalf("Relock, mlock allowed: %v", err)
				}
				if !r.Locked {
					t.Error("Relock left the region unlocked")
				}
			})
		})
	}
}

// TestForkExclusionWhereWipeOnForkRefused: where MADV_WIPEONFORK is refused
// (EINVAL from a kernel before 4.14, EPERM or ENOSYS from a system call
// filter that does not know the advice), a region must still be kept from
// a forked child: it was left to be copied into the child whole, the
// Shuffler's own region with the key and round keys included, while the
// package documentation says a forked child sees zeros. MADV_DONTFORK, as
// for secret memory, leaves the child no mapping there (smaps flag "dc").
func TestForkExclusionWhereWipeOnForkRefused(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno unix.Errno
	}{{"EINVAL", unix.EINVAL}, {"EPERM", unix.EPERM}, {"ENOSYS", unix.ENOSYS}} {
		t.Run(c.name, func(t *testing.T) {
			rules := []seccomptest.Rule{seccomptest.RefuseArg(unix.SYS_MADVISE, 2, unix.MADV_WIPEONFORK, c.errno)}
			seccomptest.Run(t, "wipeonfork-"+c.name, rules, func(t *testing.T) {
				for _, f := range []Flags{{}, {Lock: true}, {SmallPages: true}} {
					r, err := Map(3*pageSize, f)
					if err != nil {
						t.Fatal(err)
					}
					start := uint64(uintptr(unsafe.Pointer(&r.Data[0])))
					if vmFlag(t, start, "wf") {
						t.Fatal("the filter did not refuse MADV_WIPEONFORK")
					}
					if !vmFlag(t, start, "dc") {
						t.Errorf("%+v: MADV_WIPEONFORK refused and the region is not kept from a forked child either (no dc)", f)
					}
					if !r.DontDump || !vmFlag(t, start, "dd") {
						t.Errorf("%+v: the region is not excluded from dumps", f)
					}
					if err := Unmap(r); err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}

// TestLockLimitWhereGetrlimitRefused: a system call filter that refuses
// prlimit64 (and getrlimit) does not lift RLIMIT_MEMLOCK. LockLimit
// reported -1, which Stats.LockLimit documents as no limit, and the
// Shuffler then sized its arenas as if nothing bound it; the kernel
// reports the limit in /proc/self/limits too.
func TestLockLimitWhereGetrlimitRefused(t *testing.T) {
	// Read here, before the child's filter is in place.
	var want unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &want); err != nil {
		t.Skip(err)
	}
	rules := []seccomptest.Rule{
		seccomptest.Refuse(unix.SYS_PRLIMIT64, unix.EPERM),
		seccomptest.Refuse(unix.SYS_GETRLIMIT, unix.EPERM),
	}
	seccomptest.Run(t, "prlimit-EPERM", rules, func(t *testing.T) {
		var lim unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
			t.Fatal("the filter did not refuse getrlimit")
		}
		wantLimit := int64(want.Cur)
		if want.Cur == unix.RLIM_INFINITY {
			wantLimit = -1
		}
		if got := LockLimit(); got != wantLimit {
			t.Errorf("LockLimit with getrlimit refused: %d, want RLIMIT_MEMLOCK, %d", got, wantLimit)
		}
	})
}

// TestHeadroomWhereGetrlimitRefused: a system call filter that refuses
// prlimit64 and getrlimit lifts no RLIMIT_DATA, and Map must still leave
// Headroom of it to the rest of the process, reading the limit from
// /proc/self/limits or, where /proc cannot be read either, with the probe.
// The check took a refused getrlimit for no limit and mapped a region
// that left half a headroom, as a program that then grows its heap dies
// of.
func TestHeadroomWhereGetrlimitRefused(t *testing.T) {
	const limitEnv = "MEMSHUFFLE_TEST_DATA_LIMIT"
	if os.Getenv(limitEnv) == "" {
		// Set before the filter is, as the child inherits it; the child
		// is a new process, which holds less than this one.
		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_DATA, &old); err != nil {
			t.Skip(err)
		}
		if old.Cur != unix.RLIM_INFINITY {
			t.Skip("RLIMIT_DATA is set already")
		}
		_, data, ok := VMHeld()
		if !ok {
			t.Skip("no VmData in /proc/self/status")
		}
		limit := data + 4*HeadroomNow()
		if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: limit, Max: old.Max}); err != nil {
			t.Skip("setrlimit:", err)
		}
		t.Cleanup(func() {
			if err := unix.Setrlimit(unix.RLIMIT_DATA, &old); err != nil {
				t.Error(err)
			}
		})
		t.Setenv(limitEnv, strconv.FormatUint(limit, 10))
	}
	rules := []seccomptest.Rule{
		seccomptest.Refuse(unix.SYS_PRLIMIT64, unix.EPERM),
		seccomptest.Refuse(unix.SYS_GETRLIMIT, unix.EPERM),
	}
	for _, proc := range []bool{true, false} {
		name := map[bool]string{true: "limits", false: "no-proc"}[proc]
		t.Run(name, func(t *testing.T) {
			seccomptest.Run(t, "getrlimit-EPERM-"+name, rules, func(t *testing.T) {
				var lim unix.Rlimit
				if unix.Getrlimit(unix.RLIMIT_DATA, &lim) == nil {
					t.Fatal("the filter did not refuse getrlimit")
				}
				limit, err := strconv.ParseUint(os.Getenv(limitEnv), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				_, data, ok := VMHeld()
				room := HeadroomNow()
				if !ok || data >= limit-room {
					t.Fatalf("VmData %d (read: %v) under a limit of %d", data, ok, limit)
				}
				if !proc {
					status, limits := readStatus, readLimits
					gone := func() ([]byte, error) { return nil, os.ErrNotExist }
					readStatus, readLimits = gone, gone
					defer func() { readStatus, readLimits = status, limits }()
				}
				// What leaves half a headroom, which the kernel maps.
				n := int(limit - data - room/2)
				n &^= PageSize() - 1
				r, err := Map(n, Flags{})
				if uerr := Unmap(r); uerr != nil {
					t.Error(uerr)
				}
				if !errors.Is(err, ErrHeadroom) || !errors.Is(err, unix.ENOMEM) {
					t.Errorf("Map of %d bytes with %d of RLIMIT_DATA left, getrlimit refused = %v; want ErrHeadroom and ENOMEM", n, limit-data, err)
				}
				small, err := Map(PageSize(), Flags{})
				if err != nil {
					t.Errorf("Map of a page with getrlimit refused = %v; want the region", err)
				}
				if err := Unmap(small); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

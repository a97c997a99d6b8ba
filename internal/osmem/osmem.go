// Package osmem maps memory from the operating system, outside the Go heap,
// and hardens it where the platform allows: guard pages on both sides, locked
// into RAM, excluded from core dumps and from forked children.
//
// Every system call goes through the Fault seam so tests can make any of them
// fail and check that callers stay consistent.
package osmem

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Op names one operating-system call made by this package.
type Op int

// The operations a fault hook can fail.
const (
	OpMap Op = iota
	OpUnmap
	OpProtect
	OpLock
	OpAdvise
)

func (o Op) String() string {
	switch o {
	case OpMap:
		return "mmap"
	case OpUnmap:
		return "munmap"
	case OpProtect:
		return "mprotect"
	case OpLock:
		return "mlock"
	case OpAdvise:
		return "madvise"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// ErrInjected is the error a fault hook returns by default.
var ErrInjected = errors.New("osmem: injected fault")

var (
	faultMu   sync.RWMutex
	fault     func(Op) error
	lockFault func(n int) error
)

// SetFault installs hook, which is called before every operating-system call
// and makes it fail with the returned error when that is non-nil. A nil hook
// removes it. It exists for tests and is not safe to change while other
// goroutines map memory.
func SetFault(hook func(Op) error) {
	faultMu.Lock()
	fault = hook
	faultMu.Unlock()
}

// SetLockFault installs hook, which is called with the length of every
// lock this package attempts, after the Fault hook, and refuses the lock
// with the returned error when that is non-nil. The system's memory-lock
// limit refuses by size, which a hook that sees only the Op cannot model,
// and root is not held to that limit: tests model it with this. A nil hook
// removes it; like SetFault, it is not safe to change while other
// goroutines map memory.
func SetLockFault(hook func(n int) error) {
	faultMu.Lock()
	lockFault = hook
	faultMu.Unlock()
}

// injectedLock is the fault seam of a lock of n bytes: the Fault hook for
// OpLock, then the lock hook.
func injectedLock(n int) error {
	if err := injected(OpLock); err != nil {
		return err
	}
	faultMu.RLock()
	f := lockFault
	faultMu.RUnlock()
	if f == nil {
		return nil
	}
	return f(n)
}

// refused holds the regions whose unmap a fault hook refused and that no
// Unmap has released since. The refusal comes before the system call, so
// the mapping stays, as a real refusal leaves it, and a caller that gives
// up on the region (as one that cannot unmap must) leaves it mapped, and
// its locked pages counted against RLIMIT_MEMLOCK, for the life of the
// process. A test that refuses unmaps gives them back with UnmapRefused;
// with no hook installed nothing is recorded, and Unmap pays one atomic
// load.
var (
	refusedMu sync.Mutex
	refused   map[*Region]struct{}
	refusedN  atomic.Int64 // len(refused)
)

// injectedUnmap is the fault seam of Unmap: the Fault hook for OpUnmap,
// recording r when the hook refuses.
func injectedUnmap(r *Region) error {
	err := injected(OpUnmap)
	if err != nil {
		refusedMu.Lock()
		if refused == nil {
			refused = make(map[*Region]struct{})
		}
		refused[r] = struct{}{}
		refusedN.Store(int64(len(refused)))
		refusedMu.Unlock()
	}
	return err
}

// unmapped drops r, just released, from the refused regions.
func unmapped(r *Region) {
	if refusedN.Load() == 0 {
		return
	}
	refusedMu.Lock()
	delete(refused, r)
	refusedN.Store(int64(len(refused)))
	refusedMu.Unlock()
}

// UnmapRefused unmaps every region whose unmap a fault hook refused and
// that is still mapped, and reports how many it released. It is for tests
// that refuse unmaps, once the hook is removed and whatever held those
// regions has let go of them: a region still in use faults when next
// touched, so no other goroutine may be using memory from this package.
func UnmapRefused() (int, error) {
	refusedMu.Lock()
	rs := make([]*Region, 0, len(refused))
	for r := range refused {
		rs = append(rs, r)
	}
	refusedMu.Unlock()
	var errs []error
	n := 0
	for _, r := range rs {
		if err := Unmap(r); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func injected(op Op) error {
	faultMu.RLock()
	f := fault
	faultMu.RUnlock()
	if f == nil {
		return nil
	}
	return f(op)
}

// Flags selects the hardening applied to a Region.
type Flags struct {
	Lock       bool // mlock the pages; failure is reported in Region.Locked, not as an error
	StrictLock bool // make a failed mlock an error
	Secret     bool // back the memory with memfd_secret(2), outside the kernel's direct map
	// SmallPages keeps transparent huge pages out of the region (Linux), so
	// the system backs it a base page at a time: the first touch of a huge
	// page zeroes 2 MiB in the kernel in one go, which holds the CPU for
	// milliseconds on a slow machine.
	SmallPages bool
}

// Region is one mapping. Data is the usable, read-write part; guard pages
// around it (where supported) fault on any access.
type Region struct {
	Data     []byte
	Locked   bool  // Data is locked into RAM
	DontDump bool  // Data is excluded from core dumps
	LockErr  error // why locking failed, when it was asked for and did not happen
	// LockedLen is how many bytes of the process's locked memory (VmLck on
	// Linux) the region takes: len(Data) when locked with mlock, the whole
	// mapping, guard pages included, for secret memory.
	LockedLen int

	start unsafe.Pointer // the whole mapping, guard pages included
	size  uintptr
}

// ErrNoSecret is returned by Map when Flags.Secret is set and the system
// has no memfd_secret(2) or refuses it.
var ErrNoSecret = errors.New("osmem: secret memory (memfd_secret) unavailable")

// ErrLock wraps a failed mlock when Flags.StrictLock is set.
var ErrLock = errors.New("osmem: cannot lock memory")

// ErrLockForbidden wraps a lock the system refuses whatever
// RLIMIT_MEMLOCK: no mlock (ENOSYS), or EPERM under a limit above 0,
// which the kernel answers only without a limit to lock under; a system
// call filter that does not allow mlock answers either.
var ErrLockForbidden = errors.New("osmem: refused whatever the limit")

// Wipe zeroes b. It is kept out of line so the stores stay in a call the
// compiler cannot see past: the Go compiler does not remove stores through a
// slice today, and this keeps it that way if it ever learns to for memory it
// can prove is never read again.
//
//go:noinline
func Wipe(b []byte) {
	clear(b)
}

// Relock locks an unlocked region into RAM, as Map does with Flags.Lock,
// for a region whose lock the system refused at first. On success Locked
// and LockedLen say so and LockErr is cleared.
func Relock(r *Region) error {
	if r == nil || r.Locked || len(r.Data) == 0 {
		return nil
	}
	if err := lock(r.Data); err != nil {
		return err
	}
	r.Locked, r.LockedLen, r.LockErr = true, len(r.Data), nil
	return nil
}

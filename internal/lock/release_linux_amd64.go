//go:build !race

package lock

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// membarrier(2) commands, from linux/membarrier.h.
const (
	membarrierQuery                    = 0
	membarrierPrivateExpedited         = 1 << 3
	membarrierRegisterPrivateExpedited = 1 << 4
)

// asymmetric is whether Unlock may use a plain store: the kernel has
// membarrier's private expedited command and Enable registered this
// process for it.
var asymmetric bool

const canBeAsymmetric = true

var enable sync.Once

// Enable lets every Mutex let go with a plain store from now on, where the
// system allows (see the package doc): the mode is the process's, not a
// Mutex's. It must therefore be called before any Mutex is first locked:
// a sleeper on a Mutex that was in use while the mode changed could miss
// its wake-up. It is not done at start-up so that
// a program that only imports the package makes no membarrier calls, which
// some sandboxes refuse or punish.
func Enable() { enable.Do(func() { asymmetric = register() }) }

func register() bool {
	mask, _, errno := syscall.RawSyscall(unix.SYS_MEMBARRIER, membarrierQuery, 0, 0)
	if errno != 0 || mask&membarrierPrivateExpedited == 0 {
		return false
	}
	_, _, errno = syscall.RawSyscall(unix.SYS_MEMBARRIER, membarrierRegisterPrivateExpedited, 0, 0)
	return errno == 0
}

// heavyBarrier makes every thread of the process run a full memory barrier
// before it returns, and reports whether it did. The kernel does not refuse
// a process that registered, but a seccomp filter installed since (a
// sandbox that shuts a program in once it is set up) can; Unlock still
// lets go with a plain store then, so the caller must not sleep for good
// on a token that a holder may not have seen it needed.
func heavyBarrier() bool {
	if !asymmetric {
		return true
	}
	_, _, errno := syscall.Syscall(unix.SYS_MEMBARRIER, membarrierPrivateExpedited, 0, 0)
	return errno == 0
}

// release lets go of m and reports whether a goroutine sleeps on it
// (released or wakeOne), or, when a sleeper starves, keeps m held for it
// (handOff). With asymmetric set it stores 0 to m.state with a plain MOV,
// which x86 does not reorder with the critical section's loads and stores
// (and the call keeps the compiler from moving them past it), then reads
// m.waiting with a plain load, which a sleeper's heavyBarrier orders;
// otherwise it stores with XCHG, as sync/atomic does.
//
//go:noescape
func release(m *Mutex) uint8

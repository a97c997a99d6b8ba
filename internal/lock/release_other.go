//go:build !linux || !amd64 || race

package lock

// asymmetric is false: release uses an atomic store, which needs no
// barrier from the sleepers (see the package doc).
const asymmetric, canBeAsymmetric = false, false

// Enable does nothing: Unlock always uses an atomic store here.
func Enable() {}

func heavyBarrier() {}

// release lets go of m and reports whether a goroutine sleeps on it.
func release(m *Mutex) bool {
	m.state.Store(0)
	return m.waiting.Load() > 0
}

func register() bool { return false }

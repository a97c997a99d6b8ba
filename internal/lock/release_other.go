//go:build !linux || !amd64 || race

package lock

// asymmetric is false: release uses an atomic store, which needs no
// barrier from the sleepers (see the package doc).
const asymmetric, canBeAsymmetric = false, false

// Enable does nothing: Unlock always uses an atomic store here.
func Enable() {}

func heavyBarrier() bool { return true }

// release lets go of m and reports whether a goroutine sleeps on it, or
// keeps it held for a sleeper that starves.
func release(m *Mutex) uint8 {
	if m.starving.Load() > 0 {
		return handOff
	}
	m.state.Store(0)
	if m.waiting.Load() > 0 {
		return wakeOne
	}
	return released
}

func register() bool { return false }

//go:build unix

package osmem

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrMapLimit is returned, wrapping ENOMEM, by a Map that would take the
// package past its share of the process's memory mappings. Linux allows a
// process vm.max_map_count of them (65530 by default), and the Go runtime
// needs some to grow its heap and start threads: when a program's regions
// took them all, the next heap growth ended the process with "fatal error:
// runtime: out of memory", where a Map refused now is an error the caller
// can handle.
var ErrMapLimit = errors.New("osmem: this package's share of vm.max_map_count is used up")

// ErrHeadroom is returned, wrapping ENOMEM, by a Map that would leave the
// Go runtime and the rest of the program less than Headroom (Linux) of the
// process's limit on address space or data (RLIMIT_AS, RLIMIT_DATA).
var ErrHeadroom = errors.New("osmem: mapping would leave the rest of the process too little of its memory limit")

// regionMaps is the most mappings one Region takes: its data and the two
// guard pages around it, which neighbouring regions' guard pages often
// merge with, so that fewer are in use than counted.
const regionMaps = 3

var (
	// mapBudget is how many mappings the package may hold: half of
	// vm.max_map_count, read once (its default where it cannot be read);
	// 0 where the system sets no such limit.
	mapBudget atomic.Int64
	// mapsHeld is how many it holds, regionMaps per Region mapped.
	mapsHeld atomic.Int64
)

func init() { mapBudget.Store(mapCountLimit() / 2) }

// MapsHeld reports how many memory mappings the package counts as its own,
// and how many it may hold (0: no limit).
func MapsHeld() (held, budget int64) { return mapsHeld.Load(), mapBudget.Load() }

// SetMapBudgetForTest sets the package's share of the process's mappings,
// and returns the one before; 0 lifts it. Only tests call it, with no Map
// under way.
func SetMapBudgetForTest(n int64) int64 { return mapBudget.Swap(n) }

// takeMaps counts the mappings of one more Region, or refuses when they
// would pass the budget.
func takeMaps() error {
	held := mapsHeld.Add(regionMaps)
	if b := mapBudget.Load(); b > 0 && held > b {
		mapsHeld.Add(-regionMaps)
		return fmt.Errorf("osmem: mmap: %w (%d mappings held, of %d: half of vm.max_map_count, the rest left to the Go runtime and the rest of the program): %w",
			ErrMapLimit, held-regionMaps, b, unix.ENOMEM)
	}
	return nil
}

// giveMaps counts out the mappings of a Region unmapped or never mapped.
func giveMaps() { mapsHeld.Add(-regionMaps) }

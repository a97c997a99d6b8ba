package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestAuxNeverCountsMoreThanLocked: what an Aux counts as locked is never
// more than the system has locked, at any moment, so that a Shuffler's
// Stats.LockedBytes, which adds the Aux's count to the arenas' (read under
// every shard lock), never exceeds RLIMIT_MEMLOCK. Aux.Unmap counted a
// region out only once munmap had returned: the system's count had dropped
// at the start of the syscall, and for the rest of it (freeing the pages,
// milliseconds for a large region) and until the goroutine ran again, the
// bytes counted twice once another mapping locked the room they left (a
// soak as user nobody with ulimit -l 8192 saw Stats.LockedBytes 64 KiB
// over the limit, VmLck under it).
//
// One goroutine maps and unmaps a locked region through the Aux; the test
// reads the count, VmLck and the count again, in one generation of the
// region (a map and an unmap): the count said locked before and after, so
// VmLck must say so in between.
func TestAuxNeverCountsMoreThanLocked(t *testing.T) {
	n := 16 << 20
	if lim := osmem.BindingLockLimit(); lim >= 0 {
		n = int(lim/2) &^ (osmem.PageSize() - 1)
	}
	if n < 1<<20 {
		t.Skip("the memory-lock limit is too small for the region")
	}
	base := vmLck(t)
	var x Aux
	var gen atomic.Uint64 // bumped after each unmap
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mapErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			r, err := x.Map(func() (*osmem.Region, error) {
				return osmem.Map(n, osmem.Flags{StrictLock: true, SmallPages: true})
			})
			if err != nil {
				mapErr = err
				return
			}
			// Held a moment, so that samples find it counted.
			time.Sleep(time.Millisecond)
			if err := x.Unmap(r); err != nil {
				mapErr = err
				return
			}
			gen.Add(1)
		}
	}()
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	deadline := time.Now().Add(2 * time.Second)
	samples := 0
	for time.Now().Before(deadline) && gen.Load() < 2000 {
		g1 := gen.Load()
		c1 := x.Locked()
		vm := vmLck(t) - base
		c2 := x.Locked()
		if gen.Load() != g1 || c1 != int64(n) || c2 != int64(n) {
			continue
		}
		samples++
		if vm < int64(n) {
			t.Fatalf("the Aux counted %d bytes locked before and after VmLck grew by only %d (sample %d, region %d)", c1, vm, samples, gen.Load())
		}
	}
	stop.Store(true)
	wg.Wait()
	if mapErr != nil {
		t.Fatal(mapErr)
	}
	if samples == 0 {
		t.Fatal("no sample found the region counted")
	}
	t.Logf("%d samples, %d regions", samples, gen.Load())
}

//go:build amd64 || arm64 || arm

package stackscrub

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestStackBounds: the bounds Unshrinkable reads hold the caller's frame,
// so that it anchors rather than running its function as it is.
func TestStackBounds(t *testing.T) {
	lo, hi := stackBounds()
	var here byte
	if at := uintptr(unsafe.Pointer(&here)); at <= lo || at > hi || (hi-lo)&(hi-lo-1) != 0 {
		t.Errorf("stack bounds [%#x, %#x) do not hold a local at %#x", lo, hi, at)
	}
}

// reserve makes the reservation of a Guard: seal.EnterDeep's if deep,
// seal.Enter's if not.
func reserve(deep bool) {
	if deep {
		ReserveDeep()
	} else {
		Reserve()
	}
}

// descend calls f depth bytes of frames further down.
//
//go:noinline
func descend(depth int, f func()) {
	var pad [256]byte
	if depth > 0 {
		descend(depth-len(pad), f)
	} else {
		f()
	}
	keepPad(&pad)
}

//go:noinline
func keepPad(*[256]byte) {}

// parkedMoved runs, on a goroutine whose stack has first grown by grown
// KiB, a Guard's reservation and then depth bytes of frames under
// Unshrinkable (or, for the control, directly), parks there, runs two
// collections and reports whether the stack moved meanwhile, or between
// the start and the end of the function Unshrinkable ran.
func parkedMoved(t *testing.T, grown int, deep bool, depth int, anchored bool) bool {
	t.Helper()
	parked, release := make(chan struct{}), make(chan struct{})
	done := make(chan bool, 1)
	go func() {
		stacktest.Grow(grown)
		var moved bool
		f := func() {
			lo, hi := Bounds()
			reserve(deep)
			descend(depth, func() {
				var probe byte
				before := uintptr(unsafe.Pointer(&probe))
				parked <- struct{}{}
				<-release
				moved = before != uintptr(unsafe.Pointer(&probe))
			})
			lo2, hi2 := Bounds()
			moved = moved || lo != lo2 || hi != hi2
		}
		if anchored {
			Unshrinkable(deep, f)
		} else {
			f()
		}
		done <- moved
	}()
	<-parked
	runtime.GC()
	runtime.GC()
	close(release)
	return <-done
}

// TestUnshrinkable parks a function run by Unshrinkable, after a Guard's
// reservation, at depths from none to as deep as that reservation allows,
// on goroutines whose stacks have grown by up to 4 MiB, and runs
// collections meanwhile: its stack never moves, neither then nor from the
// function's start to its end. The control: run directly, the same
// function's stack is shrunk by the collections when it parks shallow.
func TestUnshrinkable(t *testing.T) {
	for _, grown := range []int{0, 24, 100, 600, 4 << 10} {
		for _, c := range []struct {
			deep   bool
			depths []int
		}{{false, []int{0, 512, 1 << 10, 2 << 10}}, {true, []int{0, 1 << 10, 4 << 10, 12 << 10, 16 << 10}}} {
			for _, depth := range c.depths {
				if parkedMoved(t, grown, c.deep, depth, true) {
					t.Errorf("deep %v, stack grown by %d KiB, parked %d bytes deep: the stack moved", c.deep, grown, depth)
				}
			}
		}
	}
	for _, deep := range []bool{false, true} {
		if !parkedMoved(t, 100, deep, 0, false) {
			t.Errorf("control, deep %v: a goroutine's own stack, parked shallow, did not move (GODEBUG=gcshrinkstackoff=1?)", deep)
		}
	}
}

// TestUnshrinkablePanics: a panic in a function Unshrinkable runs unwinds
// below the panicking frames, where the Guard's deferred Scrub runs: the
// room Unshrinkable reserves holds that too, from every starting depth,
// so the stack does not grow (copied, the old one freed) on the way out.
func TestUnshrinkablePanics(t *testing.T) {
	for _, deep := range []bool{false, true} {
		depth := Depth - 512
		if deep {
			depth = DeepDepth - 1024
		}
		grew := 0
		for start := range 150 {
			done := make(chan bool)
			go stacktest.AtDepth(start, func() {
				var moved bool
				Unshrinkable(deep, func() {
					lo, hi := Bounds()
					defer func() {
						recover()
						lo2, hi2 := Bounds()
						moved = lo != lo2 || hi != hi2
					}()
					reserve(deep)
					if deep {
						defer ScrubDeep()
					} else {
						defer Scrub()
					}
					descend(depth, func() { panic("in the guarded call") })
				})
				done <- moved
			})
			if <-done {
				grew++
			}
		}
		if grew != 0 {
			t.Errorf("deep %v: a panic %d bytes below the reservation grew the stack from %d of 150 starting depths", deep, depth, grew)
		}
	}
}

// TestUnshrinkableAllocs: Unshrinkable's function does not escape, so the
// pinned calls that share a code path with it allocate nothing for it.
func TestUnshrinkableAllocs(t *testing.T) {
	x := 0
	if n := testing.AllocsPerRun(100, func() { Unshrinkable(false, func() { x++ }) }); n != 0 {
		t.Errorf("%v allocations per call", n)
	}
}

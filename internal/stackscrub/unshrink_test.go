package stackscrub

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// parkAt reserves room as seal.Enter does, or seal.EnterDeep if deep,
// then calls down depth bytes of frames, records where its frame is,
// parks until released and records it again: a stack that moved meanwhile
// was copied, and the old one freed.
//
//go:noinline
func parkAt(deep bool, depth int, parked chan<- struct{}, release <-chan struct{}) (before, after uintptr) {
	if deep {
		ReserveDeep()
	} else {
		Reserve()
	}
	var pad [256]byte
	if depth > 0 {
		before, after = parkAt(deep, depth-len(pad), parked, release)
		keepPad(&pad)
		return before, after
	}
	before = uintptr(unsafe.Pointer(&pad[0]))
	parked <- struct{}{}
	<-release
	after = uintptr(unsafe.Pointer(&pad[0]))
	keepPad(&pad)
	return before, after
}

//go:noinline
func keepPad(*[256]byte) {}

// moved parks run's goroutine at depth, after growing its stack to about
// grown KiB, runs two collections and reports whether its stack moved.
func moved(t *testing.T, grown int, deep bool, depth int, run func(func())) bool {
	t.Helper()
	parked, release := make(chan struct{}), make(chan struct{})
	done := make(chan [2]uintptr, 1)
	go func() {
		stacktest.Grow(grown)
		run(func() {
			b, a := parkAt(deep, depth, parked, release)
			done <- [2]uintptr{b, a}
		})
	}()
	<-parked
	runtime.GC()
	runtime.GC()
	close(release)
	at := <-done
	return at[0] != at[1]
}

// TestUnshrinkable parks a function run by Unshrinkable or OnFreshStack,
// on goroutines whose stacks have grown to sizes from the smallest to
// 1 MiB, at depths from none to as deep as the reservation it makes
// allows (more than DeepDepth for the deep one), and runs collections
// meanwhile: its stack never moves. The control: run directly, the same
// function's stack is shrunk by the collections when it parks shallow.
func TestUnshrinkable(t *testing.T) {
	for _, grown := range []int{0, 24, 100, 600} {
		for _, c := range []struct {
			deep   bool
			depths []int
		}{{false, []int{0, 512, 1 << 10}}, {true, []int{0, 1 << 10, 4 << 10, 12 << 10, 20 << 10}}} {
			for _, depth := range c.depths {
				if moved(t, grown, c.deep, depth, func(f func()) { Unshrinkable(c.deep, f) }) {
					t.Errorf("Unshrinkable(deep %v), stack grown by %d KiB, parked %d bytes deep: the stack moved", c.deep, grown, depth)
				}
				if moved(t, grown, c.deep, depth, OnFreshStack) {
					t.Errorf("OnFreshStack, deep %v, parked %d bytes deep: the stack moved", c.deep, depth)
				}
			}
		}
	}
	for _, deep := range []bool{false, true} {
		if !moved(t, 100, deep, 0, func(f func()) { f() }) {
			t.Errorf("control, deep %v: a goroutine's own stack, parked shallow, did not move (GODEBUG=gcshrinkstackoff=1?)", deep)
		}
	}
}

// TestOnFreshStackEndings: f's result, its panic and its runtime.Goexit
// reach the caller as if f had run on the caller's goroutine.
func TestOnFreshStackEndings(t *testing.T) {
	ran := false
	OnFreshStack(func() { ran = true })
	if !ran {
		t.Error("f did not run")
	}

	errBoom := errors.New("boom")
	func() {
		defer func() {
			if p := recover(); p != errBoom {
				t.Errorf("recovered %v, want the panic's value", p)
			}
		}()
		OnFreshStack(func() { panic(errBoom) })
		t.Error("OnFreshStack returned after f panicked")
	}()

	func() {
		defer func() {
			var pe *runtime.PanicNilError
			if p := recover(); p == nil || !errors.As(p.(error), &pe) {
				t.Errorf("recovered %v after panic(nil)", p)
			}
		}()
		OnFreshStack(func() { panic(nil) })
	}()

	var order []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { order = append(order, "caller's defer") }()
		OnFreshStack(func() {
			defer func() { order = append(order, "f's defer") }()
			runtime.Goexit()
		})
		order = append(order, "after OnFreshStack")
	}()
	<-done
	if got := strings.Join(order, ", "); got != "f's defer, caller's defer" {
		t.Errorf("after runtime.Goexit in f: %s", got)
	}
}

package memshuffle

import (
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/store"
)

// dueNow is sh.expired(i, sl, nil) for a slot that is not StateExpired,
// with the test for deadlines inlined: in a shard where no entry has one,
// which is every shard of a Shuffler without expiries, it costs no call,
// no map lookup and no clock read. TestDueNowMatchesExpired holds the two
// to the same answers.
func (sh *shard) dueNow(i uint32, sl *store.Slot) bool {
	return !sh.Expiries.None() && sh.expired(i, sl, nil)
}

// typeCheck is typeOf's verdict on T, with the answer for types smaller
// than a pointer worked out at compile time: such a type cannot hold a Go
// pointer, so bytes and the other small element types that nearly every
// borrow and Alloc uses skip typeOf's type switch, which for a generic
// shape runs at run time. Callers test noPointerFits first, which inlines
// and folds to a constant, so for those types neither the call nor the
// test of its result is left. TestTypeCheckMatchesTypeOf holds the two to
// typeOf's answers.
func typeCheck[T any]() error {
	var z T
	if noPointerFits(unsafe.Sizeof(z)) {
		return nil
	}
	_, err := typeOf[T]()
	return err
}

// noPointerFits reports whether a type of size bytes is too small to hold
// a Go pointer, and not empty.
func noPointerFits(size uintptr) bool { return size-1 < unsafe.Sizeof(uintptr(0))-1 }

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

// typeOfSmall is typeOf with the answer for types smaller than a pointer
// worked out at compile time: such a type cannot hold a Go pointer, so
// bytes and the other small element types that nearly every borrow uses
// skip typeOf's type switch, which for a generic shape runs at run time.
// TestTypeOfSmallMatchesTypeOf holds it to typeOf's answers.
func typeOfSmall[T any]() (typeInfo, error) {
	var z T
	if n := unsafe.Sizeof(z); n == 0 || n >= unsafe.Sizeof(uintptr(0)) {
		return typeOf[T]()
	}
	return typeInfo{size: int(unsafe.Sizeof(z)), align: int(unsafe.Alignof(z))}, nil
}

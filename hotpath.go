package memshuffle

import "github.com/memshuffle/memshuffle/internal/store"

// dueNow is sh.expired(i, sl, nil) for a slot that is not StateExpired,
// with the test for deadlines inlined: in a shard where no entry has one,
// which is every shard of a Shuffler without expiries, it costs no call,
// no map lookup and no clock read. TestDueNowMatchesExpired holds the two
// to the same answers.
func (sh *shard) dueNow(i uint32, sl *store.Slot) bool {
	return !sh.Expiries.None() && sh.expiredNow(i, sl)
}

// expiredNow is expired with no UnmapList, a call of one argument fewer:
// dueNow stays within the inliner's budget (it was one over). Inlined, it
// would put dueNow over again.
//
//go:noinline
func (sh *shard) expiredNow(i uint32, sl *store.Slot) bool { return sh.expired(i, sl, nil) }

// typeCheck is typeOf's verdict on T, for callers that first test isByte,
// which inlines: bytes, which nearly every borrow and Alloc uses and which
// typeOf always accepts, then cost one comparison of T's type instead of
// a call and typeOf's type switch, which for a generic shape runs at run
// time. TestTypeCheckMatchesTypeOf holds the two to typeOf's answers.
func typeCheck[T any]() error {
	if isByte[T]() {
		return nil
	}
	_, err := typeOf[T]()
	return err
}

// isByte reports whether T is byte itself (not a type defined on it).
func isByte[T any]() bool {
	// A nil *T, not a T: boxing a T copies it, to the heap for a large one.
	_, ok := any((*T)(nil)).(*byte)
	return ok
}

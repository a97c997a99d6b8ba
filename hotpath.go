package memshuffle

import "github.com/memshuffle/memshuffle/internal/store"

// dueNow is sh.expired(i, sl, nil) for a slot that is not StateExpired,
// with the test for deadlines inlined: in a shard where no entry has one,
// which is every shard of a Shuffler without expiries, it costs no call,
// no map lookup and no clock read. TestDueNowMatchesExpired holds the two
// to the same answers.
func (sh *shard) dueNow(i uint32, sl *store.Slot) bool {
	return !sh.Expiries.None() && sh.expired(i, sl, nil)
}

package memshuffle

import (
	"slices"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// unlockedMin is the size from which the encryption or decryption of an
// entry, in the default cipher, runs with its shard unlocked: about 3 µs
// of AES here, where a 1 GiB entry held every other entry of its shard
// for hundreds of milliseconds. Below it the second lock of the shard
// would cost more than the wait it saves.
const unlockedMin = 16 << 10

// drainID is the Waiters key a drain waits on: no entry has it, since
// generations start at 1.
const drainID = 0

// flight is the set of a shard's entries whose keystream XOR runs with the
// shard unlocked. Such an entry is borrowed while it is in flight (rented,
// or viewed by the last view's return), so the
// shuffles, compactions, rotation passes and expiry sweeps leave it alone
// as they leave any borrowed entry; every call given its Handle waits for
// it to land (awaitFlight), as it would have waited for the lock; and
// whatever would change the cipher or the memory under it (a rotation's
// switch and end, Close, Purge) drains the set first.
type flight struct {
	slots    []flying // rarely more than a few
	draining int      // drains waiting: no entry takes off meanwhile
}

// flying is one entry in flight.
type flying struct {
	slot uint32
	id   uint64 // its Handle's id, which the calls waiting for it wait on
	// The flight made a live entry rented (a Rent's or View's decryption,
	// an Alloc's or a rotation's encryption), and land makes it live
	// again; Stats does not count it as a rent.
	counted bool
}

// counted is how many flights count their entry as rented.
func (f *flight) counted() int {
	n := 0
	for _, x := range f.slots {
		if x.counted {
			n++
		}
	}
	return n
}

// find returns the place of slot i in the set, or -1.
func (f *flight) find(i uint32) int {
	return slices.IndexFunc(f.slots, func(x flying) bool { return x.slot == i })
}

// remove takes slot i out of the set.
func (f *flight) remove(i uint32) {
	if k := f.find(i); k >= 0 {
		f.slots[k] = f.slots[len(f.slots)-1]
		f.slots = f.slots[:len(f.slots)-1]
	}
}

// unlockedCTR returns the CTR cipher c when an n-byte entry under it
// should be encrypted or decrypted with the shard unlocked, and nil
// otherwise: the AEADs use the shard's scratch and backup buffer
// throughout, and a drain in progress must not wait for more.
func (sh *shard) unlockedCTR(c seal.Cipher, n int) *ctr.Cipher {
	if n < unlockedMin || sh.flight.draining > 0 {
		return nil
	}
	if k, ok := seal.CTR(c); ok {
		return k
	}
	return nil
}

// xorUnlocked XORs buf, the bytes of slot i, which holds sl, with k's
// keystream of the run at base. It is called, and returns, with the shard
// locked, and lets go of the lock for the whole units of ctr.XORBulk, the
// entry in flight; the last few bytes take the shard's scratch, under the
// lock.
func (sh *shard) xorUnlocked(k *ctr.Cipher, buf []byte, base uint64, i uint32, sl *store.Slot) {
	sh.takeOff(i, sl)
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, i)
	}
	n := k.XORBulk(buf, buf, base)
	sh.mu.Lock()
	sh.land(i, sl)
	if n < len(buf) {
		k.XOR(buf[n:], buf[n:], base+uint64(n/ctr.BlockSize), &sh.scratch.KS)
	}
}

// takeOff puts slot i, which holds sl, in flight, with the shard locked. A
// live entry is rented for the flight, so that everything that leaves a
// borrowed entry alone leaves it alone; a borrowed one (a Return's) stays
// as it is.
func (sh *shard) takeOff(i uint32, sl *store.Slot) {
	counted := sl.State() == store.StateLive
	if counted {
		sl.SetState(store.StateRented)
		sh.Counts.AddRented(1)
	}
	id := makeHandle(sh.s.id, sh.index, i, sl.Gen()).id
	sh.flight.slots = append(sh.flight.slots, flying{i, id, counted})
}

// land takes slot i, which holds sl, out of flight, with the shard locked
// again, makes a live entry that took off live again, and wakes the calls
// waiting for it, and a drain waiting for the last flight.
func (sh *shard) land(i uint32, sl *store.Slot) {
	k := sh.flight.find(i)
	f := sh.flight.slots[k]
	sh.flight.remove(i)
	if f.counted {
		sl.SetState(store.StateLive)
		sh.Counts.AddRented(-1)
	}
	sh.Waiters.Wake(f.id)
	if sh.flight.draining > 0 && len(sh.flight.slots) == 0 {
		sh.Waiters.Wake(drainID)
	}
}

// inFlight, when a test sets it, runs in xorUnlocked with the shard
// unlocked, before the XOR.
var inFlight func(sh *shard, i uint32)

// awaitFlight reports false, with the shard still locked, when slot i is
// not in flight; otherwise it unlocks the shard, waits for the slot to
// land and reports true, and the caller looks the entry up again. It
// waits on the flying entry's Handle, which land wakes, not the caller's:
// a caller holding a Handle of the slot's previous entry would wait for
// ever on its own.
func (sh *shard) awaitFlight(i uint32) bool {
	k := sh.flight.find(i)
	if k < 0 {
		return false
	}
	wake := sh.Waiters.Chan(sh.flight.slots[k].id)
	sh.mu.Unlock()
	<-wake
	return true
}

// drainFlight waits, with the shard locked on entry and on return, until
// no entry of the shard is in flight; none takes off meanwhile.
func (sh *shard) drainFlight() {
	sh.flight.draining++
	for len(sh.flight.slots) > 0 {
		wake := sh.Waiters.Chan(drainID)
		sh.mu.Unlock()
		<-wake
		sh.mu.Lock()
	}
	sh.flight.draining--
}

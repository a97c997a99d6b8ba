package memshuffle

import (
	"errors"
	"slices"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
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

// sealMovedUnlocked is sealMoved for an entry that k encrypts in flight
// (see unlockedCTR): under the lock it only reserves the new place; the
// arena that place needs, if any, is mapped, the keystream XOR from the
// old place into the new one and the wipe of the old place run, and an
// arena the move empties (an oversize entry's own) is unmapped, with the
// shard unlocked. Under the lock, a 64 MiB entry held every other entry of
// its shard for 20 ms a Return, and a 1 GiB one for seconds. The entry is
// in flight throughout, so a call given its Handle waits, and Close, Purge
// and a rotation's switch wait for it to land. It reports false, having
// done nothing, when there is no memory for the move.
func (sh *shard) sealMovedUnlocked(k *ctr.Cipher, src []byte, base uint64, i uint32, sl *store.Slot) bool {
	sh.takeOff(i, sl)
	a, off, ok := sh.reserveInFlight(len(src)+sh.Overhead(), sl.Align())
	if !ok {
		sh.land(i, sl)
		return false
	}
	dst := a.Mem[off : off+len(src)]
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, i)
	}
	n := k.XORBulk(dst, src, base)
	osmem.Wipe(src[:n])
	sh.mu.Lock()
	if n < len(src) {
		k.XOR(dst[n:], src[n:], base+uint64(n/ctr.BlockSize), &sh.scratch.KS)
		osmem.Wipe(src[n:])
	}
	var later store.UnmapList
	sh.Settle(sl, a, off, &later)
	sh.s.tally.bytesMoved.Add(uint64(len(src)))
	if len(later) > 0 {
		sh.mu.Unlock()
		// A refused unmap keeps the region, wiped and counted, for the
		// next Shuffle, background cycle or Close to retry.
		_ = later.UnmapAll(&sh.s.aux)
		sh.mu.Lock()
	}
	sh.land(i, sl)
	return true
}

// reserveInFlight reserves size bytes aligned to align (store.Reserve) for
// an entry in flight, with the shard locked on entry and on return. A new
// arena it needs is mapped with the shard unlocked. It reports false when
// there is no memory, or when another call's region was on offer.
func (sh *shard) reserveInFlight(size, align int) (*store.Arena, int, bool) {
	a, off, err := sh.reserveDeferred(size, align)
	need, ok := err.(*store.NeedMap)
	if !ok {
		return a, off, err == nil
	}
	sh.mu.Unlock()
	r, err := sh.s.mapAux(need.N)
	sh.mu.Lock()
	if err != nil {
		return nil, 0, false
	}
	if sh.Arenas.Offer(r, need.N) {
		a, off, err = sh.reserveDeferred(size, align)
		r = sh.Arenas.TakeOffer()
	} else {
		err = errOfferTaken
	}
	if r != nil {
		sh.mu.Unlock()
		_ = sh.s.aux.Unmap(r) // it holds nothing
		sh.mu.Lock()
	}
	return a, off, err == nil
}

// reserveDeferred is Reserve that returns store.NeedMap instead of mapping
// under the lock. Deferred mapping is on only while the lock is held:
// Shuffle and the others that run while this shard is unlocked map
// themselves.
func (sh *shard) reserveDeferred(size, align int) (*store.Arena, int, error) {
	was := sh.Arenas.DeferMap(true)
	a, off, err := sh.Reserve(size, align, nil)
	sh.Arenas.DeferMap(was)
	return a, off, err
}

// errOfferTaken is reserveInFlight's note that another call's region was
// on offer.
var errOfferTaken = errors.New("memshuffle: another region on offer")

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

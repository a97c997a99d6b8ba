package memshuffle

import (
	"slices"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// unlockedMin is the size from which the encryption or decryption of an
// entry runs with its shard unlocked: about 3 µs of AES-CTR here (the
// authenticated modes take longer), where a 1 GiB entry held every other
// entry of its shard for hundreds of milliseconds. Below it the second
// lock of the shard would cost more than the wait it saves.
const unlockedMin = 16 << 10

// drainID is the Waiters key a drain waits on: no entry has it, since
// generations start at 1.
const drainID = 0

// flight is the set of a shard's entries whose encryption or decryption
// (and, for a moving Return or an authenticated Rent, the move to a place
// reserved for it) runs with the shard unlocked. Such an entry is borrowed
// while it is in flight (rented, or viewed by the last view's return), so
// the shuffles, compactions and expiry sweeps leave it alone as they leave
// any borrowed entry, and a rotation pass waits for one still under the
// old key; every call given its Handle waits for it to land (awaitFlight),
// as it would have waited for the lock; and whatever would change the
// cipher or the memory under it (a rotation's switch and end, Close,
// Purge) drains the set first.
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

// unlockedAEAD reports whether an n-byte entry under the shard's
// authenticated cipher is to be encrypted or decrypted with the shard
// unlocked: as for unlockedCTR, from unlockedMin bytes on, while no drain
// is waiting. The AEADs need no scratch of the shard's but the nonce and
// associated data, which each flight keeps in its own (adScratch).
func (sh *shard) unlockedAEAD(n int) bool {
	return n >= unlockedMin && sh.flight.draining == 0 && sh.Overhead() != 0
}

// adScratch returns a Scratch of its own holding the associated data of
// slot i, which holds sl, for an AEAD call in flight. Passed to a Cipher,
// it goes to the Go heap: nonce and associated data are no secret, and its
// keystream part stays unused, since only the CTR cipher writes there.
func (sh *shard) adScratch(i uint32, sl *store.Slot) seal.Scratch {
	var scr seal.Scratch
	sh.putAD(&scr, i, sl)
	return scr
}

// sealInFlight encrypts the entry of slot i, which holds sl, in place
// under the shard's cipher and the run at base, with the shard unlocked,
// when it is large enough for that (unlockedCTR, unlockedAEAD), and
// reports whether it did; otherwise it does nothing. ext is the entry's
// extent, its first size bytes the plaintext.
func (sh *shard) sealInFlight(ext []byte, size int, base uint64, i uint32, sl *store.Slot) bool {
	if u := sh.unlockedCTR(sh.ciph, size); u != nil {
		sh.xorUnlocked(u, ext[:size], base, i, sl)
		return true
	}
	if !sh.unlockedAEAD(size) {
		return false
	}
	c, scr := sh.ciph, sh.adScratch(i, sl)
	sh.takeOff(i, sl)
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, i)
	}
	c.Seal(ext, ext[:size], base, &scr)
	sh.mu.Lock()
	sh.land(i, sl)
	return true
}

// openInFlight decrypts the live entry of slot i, which holds sl, under an
// authenticated cipher, with the shard unlocked, when it is large enough
// for that (unlockedAEAD), and reports whether it did; when it did not,
// it did nothing and the caller opens the entry under the lock.
//
// In place, a failed authentication would leave the entry's bytes cleared,
// not as they were, and the shard's backup buffer that open keeps them in
// is the shard's, for calls under the lock. So the entry is decrypted into
// a new place instead, reserved as a moving Return reserves one, and the
// ciphertext left behind is wiped; when authentication fails, the new
// place is wiped and given back, and the ciphertext stays where it was,
// for inspection, as open leaves it. The move also changes the entry's
// address, as a Shuffle would.
//
// Whichever way the flight ends, the entry lands, and a deadline a sweep
// found due meanwhile (and held, the entry being in flight) is acted on:
// the entry is wiped, and unless the flight failed, the error is
// ErrExpired.
func (sh *shard) openInFlight(i uint32, sl *store.Slot) (moved bool, err error) {
	if !sh.unlockedAEAD(int(sl.Size)) {
		return false, nil
	}
	sh.takeOff(i, sl)
	moved, err = sh.openTakenOff(i, sl)
	sh.land(i, sl)
	if sh.dueNow(i, sl) && err == nil {
		err = ErrExpired
	}
	return moved, err
}

// openTakenOff is openInFlight's flight, the entry taken off.
func (sh *shard) openTakenOff(i uint32, sl *store.Slot) (moved bool, err error) {
	old := sh.Extent(sl)
	c, base, scr := sh.cipherOf(sl), sl.Ctr(), sh.adScratch(i, sl)
	// The backup buffer open keeps a copy of the ciphertext in is made as
	// open makes it, so that where there is no room for a new place the
	// fallback needs no memory it did not need before; but mapped with
	// the shard unlocked.
	if !sh.growBackupInFlight(len(old)) {
		return false, nil
	}
	a, off, ok := sh.reservePlainInFlight(len(old), sl)
	if !ok {
		return false, nil
	}
	dst := a.Mem[off : off+int(sl.Size)]
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, i)
	}
	err = c.Open(dst, old, base, &scr)
	if err == nil {
		osmem.Wipe(old)
	} else {
		osmem.Wipe(dst) // what a failed Open wrote; the tag's part stays untouched
	}
	sh.mu.Lock()
	var later store.UnmapList
	if err != nil {
		sh.Unreserve(a, off, &later)
		sh.unmapInFlight(later)
		sh.s.tamperDetected(makeHandle(sh.s.id, sh.index, i, sl.Gen()))
		return true, ErrTampered
	}
	sh.settleInFlight(sl, a, off)
	return true, nil
}

// growBackupInFlight makes the shard's backup buffer (see backupFor) at
// least n bytes for an entry in flight, mapping a larger one with the
// shard unlocked: under the lock, the first Rent of a 64 MiB entry held
// the shard's other entries for 140 ms. As backupFor, it gives the old
// buffer back first: the room it frees may be what the new one needs. It
// reports false when the system refuses.
func (sh *shard) growBackupInFlight(n int) bool {
	if sh.backup != nil && len(sh.backup.Data) >= n {
		return true
	}
	old := sh.backup
	sh.backup = nil // calls under the lock meanwhile map their own
	sh.mu.Unlock()
	sh.freeBackup(old)
	reg, err := sh.s.mapBackup(n)
	sh.mu.Lock()
	if err != nil {
		return false
	}
	// Unless another flight grew it meanwhile, reg takes the old one's
	// place, and what is left in reg goes back.
	if sh.backup == nil || len(sh.backup.Data) < n {
		sh.backup, reg = reg, sh.backup
	}
	if reg != nil {
		sh.mu.Unlock()
		sh.freeBackup(reg)
		sh.mu.Lock()
	}
	return true
}

// reservePlainInFlight is reserveInFlight for the plaintext of the entry
// in flight in sl, the size of its extent: it refuses a place in memory
// the system would not lock where the entry's place is locked, as at the
// memory-lock limit under LockBestEffort, so that a decryption in flight
// does not move plaintext from locked memory into swappable memory.
func (sh *shard) reservePlainInFlight(size int, sl *store.Slot) (*store.Arena, int, bool) {
	a, off, ok := sh.reserveInFlight(size, sl.Align())
	if ok && !a.Reg.Locked && sh.Arenas.Get(sl.Arena()).Reg.Locked {
		var later store.UnmapList
		sh.Unreserve(a, off, &later)
		sh.unmapInFlight(later)
		return nil, 0, false
	}
	return a, off, ok
}

// settleInFlight is store.Settle for an entry in flight: an arena the move
// empties is unmapped with the shard unlocked.
func (sh *shard) settleInFlight(sl *store.Slot, a *store.Arena, off int) {
	var later store.UnmapList
	sh.Settle(sl, a, off, &later)
	sh.unmapInFlight(later)
}

// unmapInFlight unmaps the regions of arenas a flight emptied, with the
// shard unlocked; the shard is locked on entry and on return. Then it
// locks arenas the system refused to lock before, as a release under the
// lock does (store.Arenas.Release): at the memory-lock limit, the arena a
// large entry moved into was mapped unlocked while its old one still held
// the room, and would stay swappable until the next Shuffle.
func (sh *shard) unmapInFlight(later store.UnmapList) { sh.giveBackInFlight(later, nil) }

// giveBackInFlight is unmapInFlight that also unmaps unused, when not nil:
// a region mapped for a new arena that none became, which does not count
// as an arena released (Stats.ArenasReleased), as later's regions do.
func (sh *shard) giveBackInFlight(later store.UnmapList, unused *osmem.Region) {
	if len(later) == 0 && unused == nil {
		return
	}
	sh.mu.Unlock()
	// A refused unmap keeps the region, wiped and counted, for the next
	// Shuffle, background cycle or Close to retry.
	_ = later.UnmapAll(&sh.s.aux)
	if unused != nil {
		_ = sh.s.aux.Unmap(unused)
	}
	sh.mu.Lock()
	sh.relock()
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

// sealMovedUnlocked is sealMoved for an entry large enough to be
// encrypted in flight, or one whose move needs a new arena, under k, the
// shard's CTR cipher, or, when k is nil, its authenticated one: under the
// lock it only reserves the new place; the arena that place needs, if
// any, is mapped, the encryption from the old place into the new one and
// the wipe of the old place run, and an arena the move empties (an
// oversize entry's own) is unmapped, with the shard unlocked. Under the
// lock, a 64 MiB entry held every other entry of its shard for 20 ms a
// Return, and a 1 GiB one for seconds. The entry is in flight throughout,
// so a call given its Handle waits, and Close, Purge and a rotation's
// switch wait for it to land. It reports false, having done nothing, when
// there is no memory for the move.
func (sh *shard) sealMovedUnlocked(k *ctr.Cipher, src []byte, base uint64, i uint32, sl *store.Slot) bool {
	sh.takeOff(i, sl)
	a, off, ok := sh.reserveInFlight(len(src)+sh.Overhead(), sl.Align())
	if !ok {
		sh.land(i, sl)
		return false
	}
	dst := a.Mem[off : off+len(src)+sh.Overhead()]
	old := sh.Extent(sl)
	c := sh.ciph
	var scr seal.Scratch
	if k == nil {
		scr = sh.adScratch(i, sl)
	}
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, i)
	}
	n := len(src)
	if k != nil {
		n = k.XORBulk(dst, src, base)
		osmem.Wipe(src[:n])
	} else {
		c.Seal(dst, src, base, &scr)
		osmem.Wipe(old)
	}
	sh.mu.Lock()
	if n < len(src) {
		// The last bytes take the shard's scratch, as in xorUnlocked.
		k.XOR(dst[n:], src[n:], base+uint64(n/ctr.BlockSize), &sh.scratch.KS)
		osmem.Wipe(src[n:])
	}
	var later store.UnmapList
	sh.Settle(sl, a, off, &later)
	sh.s.tally.bytesMoved.Add(uint64(len(src)))
	sh.sweepAfterMove(&later)
	sh.unmapInFlight(later)
	sh.land(i, sl)
	return true
}

// reserveInFlight reserves size bytes aligned to align (store.Reserve) for
// an entry in flight, with the shard locked on entry and on return. A new
// arena it needs is mapped with the shard unlocked. It reports false when
// there is no memory, or when another call's region was on offer.
func (sh *shard) reserveInFlight(size, align int) (*store.Arena, int, bool) {
	// An empty current arena that a new one replaces is unmapped with the
	// shard unlocked too.
	var later store.UnmapList
	var unused *osmem.Region // mapped here, taken by no reservation
	defer func() { sh.giveBackInFlight(later, unused) }()
	a, off, err := sh.reserveDeferred(size, align, &later)
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
	// r holds nothing, and counts in the Aux already (mapAux).
	if !sh.Arenas.Offer(r, need.N) { // another call's region is on offer
		unused = r
		return nil, 0, false
	}
	a, off, err = sh.reserveDeferred(size, align, &later)
	unused = sh.Arenas.TakeOffer()
	return a, off, err == nil
}

// reserveDeferred is Reserve that returns store.NeedMap instead of mapping
// under the lock. Deferred mapping is on only while the lock is held:
// Shuffle and the others that run while this shard is unlocked map
// themselves.
func (sh *shard) reserveDeferred(size, align int, later *store.UnmapList) (*store.Arena, int, error) {
	was := sh.Arenas.DeferMap(true)
	a, off, err := sh.Reserve(size, align, later)
	sh.Arenas.DeferMap(was)
	return a, off, err
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

// openingInFlight reports whether slot i is in flight from live: a Rent,
// View, Alloc or rotation that took it off as a resting entry, not a
// Return.
func (sh *shard) openingInFlight(i uint32) bool {
	k := sh.flight.find(i)
	return k >= 0 && sh.flight.slots[k].counted
}

// waitLanded waits, with the shard unlocked on entry and on return, until
// slot i is not in flight.
func (sh *shard) waitLanded(i uint32) {
	sh.mu.Lock()
	if !sh.awaitFlight(i) {
		sh.mu.Unlock()
	}
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

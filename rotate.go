package memshuffle

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// rotator is what a Shuffler keeps for key rotation: the lock that lets one
// rotation run at a time, what a rotation left part-way, the longest shard
// lock hold a rotation made, and the goroutine of WithKeyRotation.
type rotator struct {
	mu    sync.Mutex   // one RotateKey at a time
	calls atomic.Int32 // RotateKey calls waiting or running: a scheduled rotation stops resting
	left  rotation     // a RotateKey left part-way, under mu
	// The ciphers of the rotation in progress, under the Shuffler's
	// closeMu: for a while each is held by no shard (next until the
	// switch, prev after the last batch), and Purge and Close wipe them
	// here, not waiting for the rotation, which may be far from its end.
	keys [2]seal.Cipher

	holds rotationHolds      // the most one shard-lock hold of a rotation did
	stop  context.CancelFunc // WithKeyRotation's goroutine, set by New
	done  chan struct{}
}

// RotateKey re-encrypts every entry under a new AES-256 key and salt, with
// no data lost. A nil key or salt is replaced by a fresh random value. The
// caller's key and salt arrays are wiped before RotateKey returns, whether
// it succeeds or not, so the only copy of the key is the Shuffler's. A key
// of 32 zero bytes, almost always an array nobody filled, is refused with
// ErrInvalidKey (compared in constant time), and a salt that shares bytes
// with the key with ErrBufferOverlap; the Shuffler keeps its key, and the
// arrays are wiped all the same. An authenticated Shuffler that New made
// inside fips140.WithoutEnforcement cannot rotate outside it under
// GODEBUG=fips140=only: ErrUnsupported.
//
// In CTR mode unrented entries go from the old ciphertext to the new one
// without their plaintext ever being formed; the authenticated modes
// decrypt each in place, under its shard's lock, and seal it again, but
// for an entry larger than a batch (below), which is decrypted into a new
// place and sealed again with the shard's lock let go.
// Entries rented during the rotation are plaintext already and are
// encrypted under the new key when returned. From the moment a rotation
// starts every new encryption uses the new key; the entries encrypted
// before are re-encrypted shard by shard, in batches of at most 64 KiB (or
// one larger entry; with an authenticated cipher, also at most 256
// entries), letting go of the shard's lock between batches, so an
// operation on a rotating shard waits for one batch at most, and
// operations on other shards go on meanwhile. Counter values keep counting
// up across rotations, so even a rotation back to an earlier key and salt
// never reuses a counter block.
//
// The memory a rotation needs (the authenticated modes' backup buffers) is
// acquired for every shard before any shard switches keys. When that fails
// (ErrOutOfMemory), the Shuffler is left as it was, under its old key,
// and RotateKey can be called again. Each shard's buffer is as large as
// its largest entry, and plain memory, not locked (see
// Stats.BackupBytes): it only ever holds ciphertext, and so the
// memory-lock limit does not stop a rotation (as user nobody at 8 MiB
// under LockStrict, with entries of up to 64 KiB filling the limit, 182
// of 182 rotations completed, against 4 while the buffers were locked).
// Only when a shard gains an entry larger than any it held while the
// rotation prepared, and memory for it is then refused, can a rotation
// stop part-way: RotateKey returns an error wrapping
// ErrRotationIncomplete and the cause, every entry stays readable (each
// is under one of the two keys), and the next RotateKey finishes the
// interrupted rotation before it starts its own.
//
// A scheduled rotation (WithKeyRotation) that is under way when RotateKey
// is called stops resting between batches, so RotateKey waits for it at
// full speed before it starts its own.
//
// Arrays on the caller's stack are moved out and wiped before anything
// else, as CopyFrom does with its src (see there): the runtime copies
// them when a call grows the stack.
//
//go:nosplit
func (s *Shuffler) RotateKey(key *[32]byte, salt *[8]byte) error {
	if key != nil && salt != nil && arraysOverlap(key, salt) {
		// Moving one into the inbox would clear part of the other.
		clear(key[:])
		clear(salt[:])
		return errKeySaltOverlap
	}
	ks, ss := -1, -1
	if key != nil {
		ks = toInbox(key[:])
	}
	if salt != nil {
		ss = toInbox(salt[:])
	}
	return s.rotateKeyFrom(key, salt, ks, ss)
}

// arraysOverlap reports whether key and salt share a byte. It runs no
// stack check.
//
//go:nosplit
func arraysOverlap(key *[32]byte, salt *[8]byte) bool {
	k, sa := uintptr(unsafe.Pointer(key)), uintptr(unsafe.Pointer(salt))
	return k < sa+uintptr(len(salt)) && sa < k+uintptr(len(key))
}

// errKeySaltOverlap is RotateKey's error for a salt that shares bytes with
// the key. Made beforehand: RotateKey's front runs no stack check.
var errKeySaltOverlap = fmt.Errorf("%w: RotateKey's key and salt overlap", ErrBufferOverlap)

// rotateKeyFrom is RotateKey with the key and salt in inbox slots ks and
// ss, where toInbox put them, or, for -1, still in the caller's arrays.
func (s *Shuffler) rotateKeyFrom(key *[32]byte, salt *[8]byte, ks, ss int) error {
	if ks >= 0 {
		defer freeInbox(ks, len(key))
		key = (*[32]byte)(inboxSlot(ks, len(key)))
	}
	if ss >= 0 {
		defer freeInbox(ss, len(salt))
		salt = (*[8]byte)(inboxSlot(ss, len(salt)))
	}
	if s != nil {
		// A scheduled rotation holding rotator.mu finishes at full speed
		// rather than make this call wait for its rests.
		s.rotator.calls.Add(1)
		defer s.rotator.calls.Add(-1)
	}
	return s.rotateKey(context.Background(), key, salt, nil)
}

// rotateKey is RotateKey that stops between shards once ctx is done, and
// rests between batches as pace says, if not nil.
func (s *Shuffler) rotateKey(ctx context.Context, key *[32]byte, salt *[8]byte, pace *pacer) error {
	defer func() {
		if key != nil {
			osmem.Wipe(key[:])
		}
		if salt != nil {
			osmem.Wipe(salt[:])
		}
	}()
	if !s.made() || s.closed.Load() {
		return ErrClosed
	}
	if key != nil && keyIsZero(key[:]) {
		return errZeroKey
	}
	queued := time.Now()
	s.rotator.mu.Lock()
	defer s.rotator.mu.Unlock()
	// Time spent waiting for rotator.mu was no work.
	pace.waited(time.Since(queued))
	if s.rotator.left.next != nil {
		// Both round-key slots are in use until the last rotation is done.
		if err := s.finishRotation(ctx, pace); err != nil {
			return err
		}
	}
	s.closeMu.Lock()
	if s.closed.Load() {
		s.closeMu.Unlock()
		return ErrClosed
	}
	k, sa := s.keyBufs()
	var err error
	// The caller's key and salt are wiped as soon as they are copied, not
	// when the rotation ends: a Purge or Close during the rotation wipes
	// the Shuffler's keys at once, and the raw key, in an inbox slot or
	// the caller's array, must not outlive them until the rotating
	// goroutine next looks.
	if key != nil {
		// Not *k = *key: that copy goes through a vector register, which a
		// signal arriving meanwhile would save on the signal stack.
		aesctr.Copy(k[:], key[:])
		osmem.Wipe(key[:])
	} else {
		_, err = rand.Read(k[:])
	}
	if salt != nil {
		aesctr.Copy(sa[:], salt[:])
		osmem.Wipe(salt[:])
	} else if err == nil {
		_, err = rand.Read(sa[:])
	}
	var next seal.Cipher
	if err == nil {
		if next, err = seal.New(s.cfg.cipher, k, sa, s.cipherState(1-s.cipherSlot)); err != nil {
			err = cipherRefused(Cipher(s.cfg.cipher), err)
		}
	}
	osmem.Wipe(s.own.Data[:ownState])
	prev := s.shards[0].ciph
	if err == nil {
		s.rotator.keys = [2]seal.Cipher{next, prev}
	}
	s.closeMu.Unlock()
	if err != nil {
		return err
	}
	s.rotator.left = rotation{next: next, prev: prev, plan: s.rotator.left.plan, ks: s.rotator.left.ks}
	return s.finishRotation(ctx, pace)
}

// rotation is a RotateKey in progress. Once switched, every shard seals
// under next, and each shard's entries encrypted before the switch (their
// counter runs start below the shard's rot.base) are still under prev until
// the batches of finishRotation reach them; shards before done have none
// left.
type rotation struct {
	next, prev seal.Cipher
	switched   bool
	done       int

	// A CTR batch's plan and the combined keystream (old XOR new) for it,
	// computed with no shard lock held. That keystream is what the old and
	// new ciphertext XOR to, so it reveals nothing they do not together.
	plan []rotEntry
	ks   []byte
	scr  [ctr.ScratchSize]byte // XOR's tail block, wiped by it
}

// rotEntry is an entry a CTR batch re-encrypts: its slot as the batch found
// it, and the counter run it moves to.
type rotEntry struct {
	i, gen, size uint32
	from, to     uint64
}

// shardRotation is where a rotation stands in one shard.
//
// Counter values only grow over a Shuffler's life, and a shard hands them
// out in increasing order (see shard.reserve), so the shard's next counter
// value at the moment it switches keys, base, splits its entries: a counter
// run that starts below base was encrypted under the old key, one at or above
// it under the new key. Every encryption after the switch (an Alloc, a
// Return, a batch of the rotation) takes fresh values, so lands above it;
// a move keeps the entry's run and its key with it. No flag per entry is
// needed, and the hot paths pay one nil check.
type shardRotation struct {
	prev   seal.Cipher // the old cipher while the shard rotates, else nil
	base   uint64      // the first counter value under the latest key
	cursor uint32      // slots before it hold no resting entry below base

	// prepared: a rotation acquired the shard's backup buffer and has yet
	// to switch keys.
	prepared bool
}

// keepsBackup reports whether a rotation counts on the shard's backup
// buffer, acquired before the switch so that the rotation cannot stop
// part-way for want of memory: reclaim must leave it.
func (r *shardRotation) keepsBackup() bool { return r.prepared || r.prev != nil }

// rotationHolds records the most one hold of a shard lock by a rotation
// re-encrypted and how long it lasted, what a Rent of that shard waited for
// at worst, and how long the holds took.
type rotationHolds struct {
	bytes, nanos atomic.Int64
	holds        atomic.Uint64
	// hist[k] counts holds of [2^(k-1), 2^k) ns: percentiles of the
	// hold time, which a loaded machine's descheduling distorts less than
	// the maximum.
	hist [40]atomic.Uint64
}

// percentile returns the upper bound, in ns, of the histogram bucket the
// p-th fraction of holds falls in.
func (h *rotationHolds) percentile(p float64) int64 {
	var total uint64
	for i := range h.hist {
		total += h.hist[i].Load()
	}
	if total == 0 {
		return 0
	}
	want, seen := uint64(p*float64(total)), uint64(0)
	for i := range h.hist {
		if seen += h.hist[i].Load(); seen > want {
			return 1 << i
		}
	}
	return 1 << (len(h.hist) - 1)
}

// Rotation batches: one hold of a shard lock re-encrypts at most
// rotateBatchBytes of entries (but always one entry, however large) and,
// in the authenticated modes, at most rotateBatchEntries of them, and
// looks at most at rotateBatchSlots slots, so that a Rent of the shard
// waits for one batch, never for the whole shard. An AEAD opens and seals
// each entry: 64 KiB of 32-byte entries, 1,365 of them, held a shard for
// about 0.5 ms, and up to 2.3 ms on a busy machine.
const (
	rotateBatchBytes   = 64 << 10
	rotateBatchEntries = 256
	rotateBatchSlots   = 4096
)

// cipherOf returns the cipher sl's resting ciphertext is under.
func (sh *shard) cipherOf(sl *store.Slot) seal.Cipher {
	if sh.rot.prev != nil && sl.Ctr() < sh.rot.base {
		return sh.rot.prev
	}
	return sh.ciph
}

// beforeRotationSwitch, when set by a test, runs between the two phases of
// a rotation; afterRotationHold after every hold of a shard lock by the
// rotation, with no lock held.
var beforeRotationSwitch, afterRotationHold func()

// finishRotation moves the shards' entries still under s.rotator.left.prev to
// s.rotator.left.next. First it acquires what every shard needs, then switches every
// shard to seal under next, then re-encrypts the old entries shard by shard
// in batches, letting go of the shard lock between batches, and resting
// between them as pace says, if not nil.
func (s *Shuffler) finishRotation(ctx context.Context, pace *pacer) error {
	r := &s.rotator.left
	if !r.switched {
		if err := s.switchRotation(ctx); err != nil {
			// No shard switched: forget next, and the Shuffler is as it
			// was.
			s.closeMu.Lock()
			s.wipeUnheld(r.next)
			s.rotator.keys = [2]seal.Cipher{}
			s.closeMu.Unlock()
			s.rotator.left = rotation{}
			return err
		}
	}
	fail := func(err error) error {
		return fmt.Errorf("%w: %d of %d shards wholly under the new key: %w", ErrRotationIncomplete, r.done, len(s.shards), err)
	}
	_, isCTR := seal.CTR(r.next)
	for i := r.done; i < len(s.shards); i++ {
		sh := &s.shards[i]
		for {
			if err := ctx.Err(); err != nil {
				return fail(err)
			}
			var done bool
			var err error
			if isCTR {
				done, err = s.rotateStepCTR(sh)
			} else {
				var big rotEntry
				await := -1
				done, err = s.rotateHoldThen(sh, func() (int, bool, error) { return sh.rotateBatch(&big, &await) }, func() {
					if big.size != 0 {
						s.rekeyAEADInFlight(sh, big)
					}
					if await >= 0 {
						sh.waitLanded(uint32(await))
					}
				})
			}
			if err != nil {
				if errors.Is(err, ErrClosed) {
					return err
				}
				return fail(err)
			}
			if done {
				break
			}
			if s.rotator.calls.Load() == 0 {
				pace.rest()
			}
		}
		r.done = i + 1
	}
	// No entry is under the old round keys any more, but an entry opened
	// in flight may still be reading them.
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.drainFlight()
		sh.mu.Unlock()
	}
	s.closeMu.Lock()
	s.wipeUnheld(r.prev)
	s.rotator.keys = [2]seal.Cipher{}
	s.cipherSlot = 1 - s.cipherSlot
	closed := s.closed.Load()
	s.closeMu.Unlock()
	if closed {
		// Purged or closed after the last batch: no entry is under the
		// new key either, and no rotation happened that counts.
		s.rotator.left = rotation{}
		return ErrClosed
	}
	// The batch buffers stay for the next rotation (ks is cleared after
	// every batch): a Shuffler under WithKeyRotation then rotates without
	// feeding the garbage collector, whose pauses stop every goroutine.
	s.rotator.left = rotation{plan: r.plan[:0], ks: r.ks}
	n := s.tally.rotations.Add(1)
	s.log(slog.LevelInfo, "memshuffle: key rotated", slog.Uint64("rotations", n))
	return nil
}

// wipeCiphers clears the key material of every cipher a shard holds, the
// current one and, part-way through a rotation, the old one, and of the
// rotation's own two, held by no shard for a while, for Close
// and Purge once every shard is closed, so that no call can use them, and
// before Close unmaps the Shuffler's region, where CTR's round keys are.
// The authenticated modes' keys are on the Go heap: only this clears them.
func (s *Shuffler) wipeCiphers() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.ciph != nil {
			sh.ciph.Wipe()
		}
		if sh.rot.prev != nil {
			sh.rot.prev.Wipe()
		}
		sh.mu.Unlock()
	}
	for _, c := range s.rotator.keys {
		if c != nil {
			s.wipeUnheld(c)
		}
	}
}

// wipeUnheld wipes a cipher no shard holds any more, or ever held, unless
// its round keys are in the Shuffler's region and Close has unmapped it
// (having wiped it first). The caller holds closeMu.
func (s *Shuffler) wipeUnheld(c seal.Cipher) {
	if !s.released || !c.OffHeap() {
		c.Wipe()
	}
}

// rotateHold runs f under sh's lock, unless the shard is closed, and records
// how long the hold lasted and what f re-encrypted in it.
func (s *Shuffler) rotateHold(sh *shard, f func() (n int, done bool, err error)) (bool, error) {
	return s.rotateHoldThen(sh, f, nil)
}

// rotateHoldThen is rotateHold that runs then, if not nil, once the lock is
// let go, before afterRotationHold: a test's hook that rents the entry a
// hold put in flight would otherwise wait for itself.
func (s *Shuffler) rotateHoldThen(sh *shard, f func() (n int, done bool, err error), then func()) (bool, error) {
	if !sh.lockOpen() {
		return false, ErrClosed
	}
	t0 := time.Now()
	n, done, err := f()
	d := time.Since(t0)
	if then == nil {
		sh.unlockYield()
	} else {
		// A flight f started lands in then before any logger runs: one
		// that Purges would wait for it, in this goroutine, for ever.
		sh.mu.Unlock()
		then()
		s.flushLog()
	}
	storeMax(&s.rotator.holds.bytes, int64(n))
	storeMax(&s.rotator.holds.nanos, d.Nanoseconds())
	s.rotator.holds.holds.Add(1)
	s.rotator.holds.hist[min(bits.Len64(uint64(d.Nanoseconds())), len(s.rotator.holds.hist)-1)].Add(1)
	if afterRotationHold != nil {
		afterRotationHold()
	}
	return done, err
}

// rotateStepCTR re-encrypts one batch of a CTR shard in three steps: under
// the shard lock it plans the batch (the entries and their new counter
// runs); with no shard lock held it computes the keystream that turns each
// old ciphertext into the new one; under the lock again it XORs that into
// every planned entry still as planned. The lock is held for a scan and an
// XOR at memory speed, not for the AES work.
func (s *Shuffler) rotateStepCTR(sh *shard) (bool, error) {
	r := &s.rotator.left
	var end uint32
	var big rotEntry
	done, err := s.rotateHoldThen(sh, func() (n int, done bool, err error) {
		r.plan, end, n, done, err = sh.planBatch(r.plan[:0], &big)
		return n, done, err
	}, func() {
		if big.size != 0 {
			s.rekeyInFlight(sh, big)
		}
	})
	if err != nil || done || big.size != 0 {
		return done, err
	}
	total := 0
	for _, e := range r.plan {
		total += int(e.size)
	}
	if cap(r.ks) < total {
		r.ks = make([]byte, total)
	}
	ks := r.ks[:total]
	clear(ks)
	// Close and Purge wipe and unmap the round keys under closeMu.
	s.closeMu.Lock()
	if s.closed.Load() {
		s.closeMu.Unlock()
		return false, ErrClosed
	}
	prevCTR, _ := seal.CTR(r.prev)
	nextCTR, _ := seal.CTR(r.next)
	off := 0
	for _, e := range r.plan {
		ctr.Rekey(ks[off:off+int(e.size)], prevCTR, e.from, nextCTR, e.to, &r.scr)
		off += int(e.size)
	}
	s.closeMu.Unlock()
	done, err = s.rotateHold(sh, func() (int, bool, error) {
		return sh.applyBatch(r.plan, ks, end), sh.rot.prev == nil, nil
	})
	clear(ks)
	return done, err
}

// rekeyInFlight re-encrypts e, an entry of sh that planBatch put in
// flight, from the rotation's old key to its new one with the shard
// unlocked, and lands it, whatever the rotation's context says: until it
// lands, Close and Purge wait for it.
func (s *Shuffler) rekeyInFlight(sh *shard, e rotEntry) {
	r := &s.rotator.left
	prevCTR, _ := seal.CTR(r.prev)
	nextCTR, _ := seal.CTR(r.next)
	sh.mu.Lock()
	sl := sh.Slots.At(e.i)
	mem := sh.Bytes(sl)
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, e.i)
	}
	n := ctr.RekeyBulk(mem, prevCTR, e.from, nextCTR, e.to)
	sh.mu.Lock()
	sh.land(e.i, sl)
	if n < len(mem) {
		blk := uint64(n / ctr.BlockSize)
		ctr.Rekey(mem[n:], prevCTR, e.from+blk, nextCTR, e.to+blk, &sh.scratch.KS)
	}
	sl.SetCtr(e.to)
	sh.dueNow(e.i, sl) // its deadline may have passed in flight
	sh.unlockYield()
	storeMax(&s.rotator.holds.bytes, int64(e.size))
}

// rekeyAEADInFlight re-encrypts e, an entry of sh in an authenticated mode
// that rotateBatch put in flight, from the rotation's old key to its new
// one with the shard unlocked, and lands it, whatever the rotation's
// context says: until it lands, Close and Purge wait for it. As a Rent in
// flight does (openInFlight), it decrypts into a new place, so that an
// entry that fails authentication stays as found; under the new key it
// then keeps failing, as in rotateBatch. Where there is no room for the
// new place, the entry is re-encrypted in place under the lock, as
// rotateBatch does.
func (s *Shuffler) rekeyAEADInFlight(sh *shard, e rotEntry) {
	sh.mu.Lock()
	defer sh.unlockYield()
	sl := sh.Slots.At(e.i)
	prev, next := sh.rot.prev, sh.ciph
	old := sh.Extent(sl)
	a, off, ok := sh.reservePlainInFlight(len(old), sl)
	if !ok {
		sh.land(e.i, sl)
		if sh.dueNow(e.i, sl) {
			// Its deadline passed, and was held, while the lock was let
			// go to map the new place: wiped, it needs no new key.
			return
		}
		// rotateBatch made sure of the backup, but a Rent in flight may
		// have given it back meanwhile, to grow it, and been refused.
		if _, err := sh.backupFor(len(old)); err != nil {
			// Not decrypted either way, the entry stays under the old key,
			// and the pass comes back to it, to stop there with the
			// refusal: open failing for want of memory would pass for a
			// failed authentication, and the entry be counted under the
			// new key, unreadable.
			sh.rot.cursor = min(sh.rot.cursor, e.i)
			return
		}
		if sh.open(e.i, sl) == nil {
			sh.ciph.Seal(old, old[:sl.Size], e.to, sh.scratch)
		}
		sl.SetCtr(e.to)
		storeMax(&s.rotator.holds.bytes, int64(len(old)))
		return
	}
	dst := a.Mem[off : off+len(old)]
	scr := sh.adScratch(e.i, sl)
	sh.mu.Unlock()
	if inFlight != nil {
		inFlight(sh, e.i)
	}
	err := prev.Open(dst[:e.size], old, e.from, &scr)
	if err == nil {
		osmem.Wipe(old)
		// The plaintext is in the new place, in the shard's arenas, as
		// during a Rent, until this seals it.
		next.Seal(dst, dst[:e.size], e.to, &scr)
	} else {
		osmem.Wipe(dst[:e.size])
	}
	sh.mu.Lock()
	if err == nil {
		sh.settleInFlight(sl, a, off)
	} else {
		var later store.UnmapList
		sh.Unreserve(a, off, &later)
		sh.unmapInFlight(later)
		sh.s.tamperDetected(makeHandle(s.id, sh.index, e.i, sl.Gen()))
	}
	sh.land(e.i, sl)
	sl.SetCtr(e.to)
	sh.dueNow(e.i, sl) // its deadline may have passed in flight
	storeMax(&s.rotator.holds.bytes, int64(len(old)))
}

// planBatch appends to plan the next entries of a CTR shard still under
// the old key, at most rotateBatchBytes of them, with new counter runs,
// and reports the slot the plan ends before and the bytes it planned.
// An entry larger than a batch is re-encrypted at once, in place, alone in
// its hold. A shard with nothing left is finished.
//
// With both ciphers' round keys off the heap, a large entry is put in
// flight instead and described in *big, for rekeyInFlight to re-encrypt
// with the lock let go.
func (sh *shard) planBatch(plan []rotEntry, big *rotEntry) (p []rotEntry, end uint32, n int, done bool, err error) {
	r := &sh.rot
	if r.prev == nil {
		return plan, 0, 0, true, nil
	}
	end = r.cursor
	for range rotateBatchSlots {
		if end >= sh.Slots.Len() {
			break
		}
		sl := sh.Slots.At(end)
		if sl.State() != store.StateLive || sl.Ctr() >= r.base {
			end++
			continue
		}
		size := int(sl.Size)
		if size > rotateBatchBytes {
			if len(plan) > 0 {
				break
			}
			base, err := sh.reserve(sh.ciph.Counters(size))
			if err != nil {
				return plan, end, 0, false, err
			}
			prevCTR, _ := seal.CTR(r.prev)
			nextCTR, _ := seal.CTR(sh.ciph)
			r.cursor = end + 1
			if sh.flight.draining == 0 && prevCTR.OffHeap() && nextCTR.OffHeap() {
				*big = rotEntry{i: end, gen: sl.Gen(), size: sl.Size, from: sl.Ctr(), to: base}
				sh.takeOff(end, sl)
				return plan, r.cursor, 0, false, nil
			}
			ctr.Rekey(sh.Bytes(sl), prevCTR, sl.Ctr(), nextCTR, base, &sh.scratch.KS)
			sl.SetCtr(base)
			return plan, r.cursor, size, false, nil
		}
		if n+size > rotateBatchBytes {
			break
		}
		base, err := sh.reserve(sh.ciph.Counters(size))
		if err != nil {
			return plan, end, n, false, err
		}
		plan = append(plan, rotEntry{i: end, gen: sl.Gen(), size: sl.Size, from: sl.Ctr(), to: base})
		n += size
		end++
	}
	if len(plan) == 0 && end >= sh.Slots.Len() {
		r.cursor, r.prev = end, nil
		return plan, end, 0, true, nil
	}
	// Nothing is re-encrypted in this hold; the bytes are applyBatch's.
	return plan, end, 0, false, nil
}

// applyBatch XORs each planned entry with its part of ks, the keystream
// from its old run to its new one, if the entry is still resting at its
// old run; an entry rented, freed or re-encrypted meanwhile has left it
// and needs nothing (a move keeps it). The cursor then passes the plan.
func (sh *shard) applyBatch(plan []rotEntry, ks []byte, end uint32) int {
	n, off := 0, 0
	for _, e := range plan {
		k := ks[off : off+int(e.size)]
		off += int(e.size)
		if e.i >= sh.Slots.Len() {
			continue // freed while the lock was let go, and its chunk dropped
		}
		sl := sh.Slots.At(e.i)
		if sl.State() != store.StateLive || sl.Gen() != e.gen || sl.Ctr() != e.from || sl.Size != e.size {
			continue
		}
		data := sh.Bytes(sl)
		subtle.XORBytes(data, data, k)
		sl.SetCtr(e.to)
		n += int(e.size)
	}
	r := &sh.rot
	r.cursor = max(r.cursor, end)
	if r.cursor >= sh.Slots.Len() {
		r.prev = nil
	}
	return n
}

// switchRotation acquires what rotating every shard takes, then switches
// all of them to seal under s.rotator.left.next. On an error of the first
// phase no shard has switched; ErrClosed in the second may leave some
// switched, which does not matter: Close or Purge is closing every shard
// and wiping both ciphers.
func (s *Shuffler) switchRotation(ctx context.Context) error {
	r := &s.rotator.left
	for i := range s.shards {
		err := ctx.Err()
		sh := &s.shards[i]
		if err == nil && !sh.lockOpen() {
			err = ErrClosed
		}
		if err == nil {
			err = sh.prepareRekey()
			sh.rot.prepared = err == nil
			sh.mu.Unlock()
			s.flushLog() // what the preparation raised under the lock
		}
		if err != nil {
			s.unprepare(i)
			return err
		}
	}
	if beforeRotationSwitch != nil {
		beforeRotationSwitch()
	}
	for i := range s.shards {
		sh := &s.shards[i]
		if !sh.lockOpen() {
			return ErrClosed
		}
		// An entry sealed in flight under the old key would land live,
		// and old, behind the rotation's pass.
		sh.drainFlight()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		sh.rot = shardRotation{prev: sh.ciph, base: sh.ctrNext}
		sh.ciph = r.next
		sh.mu.Unlock()
	}
	r.switched = true
	return nil
}

// prepareSlots is how many slots prepareRekey looks at with the shard
// locked: about 100 µs' worth.
const prepareSlots = 1 << 16

// unprepare gives back the backup buffers of the first n shards, prepared
// for a rotation that will not switch. Kept, they held the room the
// rotation failed for: at the limit, a Shuffle of an AEAD Shuffler failed
// every time after one refused RotateKey.
func (s *Shuffler) unprepare(n int) {
	for i := range s.shards[:n] {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.rot.prepared = false
		sh.dropIdleBackup()
		sh.mu.Unlock()
	}
}

// prepareRekey acquires what rekeying the shard takes: in the
// authenticated modes, a backup buffer as large as the largest entry.
// Counter values are drawn batch by batch; only the exhaustion of the
// 64-bit counter space could refuse them.
//
// It is called, and returns, with the shard locked, but lets go of the
// lock between pieces of prepareSlots slots of its search for the largest
// entry: the whole table at once held the shard 1.7 ms for a million
// entries. An entry made larger meanwhile gets its buffer when the
// rotation reaches it, as one made after the switch does. It returns
// ErrClosed, locked, if the shard closed meanwhile.
func (sh *shard) prepareRekey() error {
	if sh.Overhead() == 0 {
		return nil
	}
	largest := 0
	for i := uint32(0); i < sh.Slots.Len(); i++ {
		if i > 0 && i%prepareSlots == 0 {
			sh.mu.Unlock()
			sh.mu.Lock()
			if sh.closed {
				return ErrClosed
			}
			if i >= sh.Slots.Len() {
				break
			}
		}
		// Borrowed entries too: one returned before the switch rests
		// under the old key like any other.
		switch sl := sh.Slots.At(i); sl.State() {
		case store.StateLive, store.StateRented, store.StateViewed:
			largest = max(largest, int(sl.Size)+sh.Overhead())
		}
	}
	if largest > 0 {
		if _, err := sh.backupFor(largest); err != nil {
			return err
		}
	}
	return nil
}

// rotateBatch re-encrypts under sh.ciph, in an authenticated mode, the
// next resting entries still under sh.rot.prev: up to rotateBatchBytes and
// rotateBatchEntries of them, but at least one, looking at no more than
// rotateBatchSlots slots.
// It reports the bytes it re-encrypted and whether the shard has no entry
// under the old key left. Rented and viewed entries are plaintext: their
// Return seals them under the new key. (CTR batches go by rotateStepCTR.)
//
// An entry larger than a batch, which it would re-encrypt alone in its
// hold, is put in flight instead and described in *big, for
// rekeyAEADInFlight to re-encrypt with the lock let go. The batch stops
// at an entry that a Rent or View is decrypting in flight (openInFlight),
// and sets *await to its slot, for the rotation to wait for it to land:
// the decryption may fail and leave it as it was, under the old key, and
// a pass that went by it would leave it there, to be wiped with that key.
func (sh *shard) rotateBatch(big *rotEntry, await *int) (n int, done bool, err error) {
	r := &sh.rot
	if r.prev == nil {
		return 0, true, nil
	}
	entries := 0
	for range rotateBatchSlots {
		if r.cursor >= sh.Slots.Len() {
			break
		}
		i := r.cursor
		sl := sh.Slots.At(i)
		if sl.State() != store.StateLive || sl.Ctr() >= r.base {
			if sl.Ctr() < r.base && sh.openingInFlight(i) {
				*await = int(i)
				return n, false, nil
			}
			r.cursor++
			continue
		}
		ext := int(sl.Size) + sh.Overhead()
		if n > 0 && (n+ext > rotateBatchBytes || entries == rotateBatchEntries) {
			return n, false, nil
		}
		entries++
		// Only an entry larger than any when the rotation began needs more;
		// refused, the rotation stops here, every entry readable.
		if _, err := sh.backupFor(ext); err != nil {
			return n, false, err
		}
		base, err := sh.reserve(sh.ciph.Counters(int(sl.Size)))
		if err != nil {
			return n, false, err
		}
		if ext > rotateBatchBytes && sh.unlockedAEAD(int(sl.Size)) {
			// Alone in this hold (n is 0): nothing is re-encrypted in it.
			*big = rotEntry{i: i, gen: sl.Gen(), size: sl.Size, from: sl.Ctr(), to: base}
			sh.takeOff(i, sl)
			r.cursor++
			return 0, false, nil
		}
		if sh.open(i, sl) == nil {
			// An AEAD has no shortcut from ciphertext to ciphertext: the
			// entry is plaintext, in place and under the shard lock, between
			// these two calls. open left its associated data in the scratch.
			e := sh.Extent(sl)
			sh.ciph.Seal(e, e[:sl.Size], base, sh.scratch)
		}
		// An entry that fails authentication stays as found: under the new
		// key it keeps failing, and keeps reporting ErrTampered.
		sl.SetCtr(base)
		n += ext
		r.cursor++
	}
	if r.cursor < sh.Slots.Len() {
		return n, false, nil
	}
	r.prev = nil
	return n, true, nil
}

// startKeyRotation starts the goroutine of WithKeyRotation; New calls it,
// before the Shuffler is shared.
func (s *Shuffler) startKeyRotation(every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	s.rotator.stop, s.rotator.done = cancel, make(chan struct{})
	go s.rotateLoop(ctx, every, s.rotator.done)
}

// stopKeyRotation ends the goroutine of WithKeyRotation, if any, and waits
// for it. A rotation in progress stops at the next shard; the next
// RotateKey would finish it.
func (s *Shuffler) stopKeyRotation() {
	if s.rotator.stop != nil {
		s.rotator.stop()
		<-s.rotator.done
	}
}

// scheduledRotation runs one rotation of rotateLoop's. A failure is
// counted and logged, for the next tick to try again; it reports false
// when the loop is to stop: ctx done or the Shuffler closed.
func (s *Shuffler) scheduledRotation(ctx context.Context, pace *pacer) bool {
	err := s.rotateKey(ctx, nil, nil, pace)
	if ctx.Err() != nil || errors.Is(err, ErrClosed) {
		return false
	}
	if err != nil {
		s.tally.rotationsFailed.Add(1)
		s.log(slog.LevelWarn, "memshuffle: scheduled key rotation failed", slog.String("error", err.Error()))
	}
	return true
}

func (s *Shuffler) rotateLoop(ctx context.Context, every time.Duration, done chan<- struct{}) {
	// The logger's handler runs on this goroutine (the events a rotation
	// hands over, its own): one that ends it with runtime.Goexit (as
	// t.FailNow does) would end scheduled rotation for good, silently.
	// Another goroutine takes over, and the next rotation finishes the
	// one it left part-way. A handler's panic is the logger's to recover.
	ended := false
	defer func() {
		if !ended && ctx.Err() == nil {
			go s.rotateLoop(ctx, every, done)
			return
		}
		close(done)
	}()
	s.rotateEvery(ctx, every)
	ended = true
}

// rotateEvery rotates every interval until ctx is done or a rotation
// reports the Shuffler closed.
func (s *Shuffler) rotateEvery(ctx context.Context, every time.Duration) {
	t := time.NewTimer(every)
	defer t.Stop()
	// One pacer for every rotation, as for the background's cycles: at a
	// short interval, rotations of a few entries each take far less than a
	// burst, and a pacer of their own never rested.
	pace := newPacer()
	for {
		waited := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pace.waited(time.Since(waited))
		if !s.scheduledRotation(ctx, &pace) {
			return
		}
		// A rotation of a few entries reaches none of the rests inside
		// it; their work adds up here.
		pace.rest()
		t.Reset(every)
	}
}

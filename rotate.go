package memshuffle

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seal"
)

// RotateKey re-encrypts every entry under a new AES-256 key and salt, with
// no data lost. A nil key or salt is replaced by a fresh random value. The
// caller's key and salt arrays are wiped before RotateKey returns, whether
// it succeeds or not, so the only copy of the key is the Shuffler's.
//
// Unrented entries go from the old ciphertext to the new one without their
// plaintext ever being formed (in the authenticated modes, formed in place
// only). Entries rented during the rotation are plaintext already and are
// encrypted under the new key when returned. From the moment a rotation
// starts every new encryption uses the new key; the entries encrypted
// before are re-encrypted shard by shard, in batches of at most 64 KiB (or
// one larger entry), letting go of the shard's lock between batches, so an
// operation on a rotating shard waits for one batch at most, and
// operations on other shards go on meanwhile. Counter values keep counting
// up across rotations, so even a rotation back to an earlier key and salt
// never reuses a counter block.
//
// The memory a rotation needs (the authenticated modes' backup buffers) is
// acquired for every shard before any shard switches keys. When that fails
// (ErrLockFailed, ErrOutOfMemory), the Shuffler is left as it was, under
// its old key, and RotateKey can be called again. Only when a shard gains
// an entry larger than any it held while the rotation prepared, and memory
// for it is then refused, can a rotation stop part-way: RotateKey returns
// an error wrapping ErrRotationIncomplete and the cause, every entry stays
// readable (each is under one of the two keys), and the next RotateKey
// finishes the interrupted rotation before it starts its own.
func (s *Shuffler) RotateKey(key *[32]byte, salt *[8]byte) error {
	return s.rotateKey(context.Background(), key, salt)
}

// rotateKey is RotateKey that stops between shards once ctx is done.
func (s *Shuffler) rotateKey(ctx context.Context, key *[32]byte, salt *[8]byte) error {
	defer func() {
		if key != nil {
			osmem.Wipe(key[:])
		}
		if salt != nil {
			osmem.Wipe(salt[:])
		}
	}()
	if s == nil || s.closed.Load() || len(s.shards) == 0 {
		return ErrClosed
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	if s.rot.next != nil {
		// Both round-key slots are in use until the last rotation is done.
		if err := s.finishRotation(ctx); err != nil {
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
	if key != nil {
		// Not *k = *key: that copy goes through a vector register, which a
		// signal arriving meanwhile would save on the signal stack.
		aesctr.Copy(k[:], key[:])
	} else {
		_, err = rand.Read(k[:])
	}
	if salt != nil {
		aesctr.Copy(sa[:], salt[:])
	} else if err == nil {
		_, err = rand.Read(sa[:])
	}
	var next seal.Cipher
	if err == nil {
		next, err = seal.New(s.cfg.cipher, k, sa, s.cipherState(1-s.cipherSlot))
	}
	osmem.Wipe(s.own.Data[:ownState])
	s.closeMu.Unlock()
	if err != nil {
		return err
	}
	s.rot = rotation{next: next, prev: s.shards[0].ciph}
	return s.finishRotation(ctx)
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
}

// rotationHolds records the most one hold of a shard lock by a rotation
// re-encrypted and how long it lasted: what a Rent of that shard waited for
// at worst.
type rotationHolds struct {
	bytes, nanos atomic.Int64
	holds        atomic.Uint64
}

// Rotation batches: one hold of a shard lock re-encrypts at most
// rotateBatchBytes of entries (but always one entry, however large) and
// looks at most at rotateBatchSlots slots, so that a Rent of the shard waits
// for one batch, never for the whole shard.
const (
	rotateBatchBytes = 64 << 10
	rotateBatchSlots = 4096
)

// cipherOf returns the cipher sl's resting ciphertext is under.
func (sh *shard) cipherOf(sl *slot) seal.Cipher {
	if sh.rot.prev != nil && sl.ctr < sh.rot.base {
		return sh.rot.prev
	}
	return sh.ciph
}

// beforeRotationSwitch, when set by a test, runs between the two phases of
// a rotation; afterRotationBatch after every batch, with no lock held.
var beforeRotationSwitch, afterRotationBatch func()

// finishRotation moves the shards' entries still under s.rot.prev to
// s.rot.next. First it acquires what every shard needs, then switches every
// shard to seal under next, then re-encrypts the old entries shard by shard
// in batches, letting go of the shard lock between batches.
func (s *Shuffler) finishRotation(ctx context.Context) error {
	r := &s.rot
	if !r.switched {
		if err := s.switchRotation(ctx); err != nil {
			// No shard switched: forget next, and the Shuffler is as it
			// was.
			s.closeMu.Lock()
			if !s.closed.Load() {
				r.next.Wipe()
			}
			s.closeMu.Unlock()
			s.rot = rotation{}
			return err
		}
	}
	fail := func(err error) error {
		return fmt.Errorf("%w: %d of %d shards wholly under the new key: %w", ErrRotationIncomplete, r.done, len(s.shards), err)
	}
	for i := r.done; i < len(s.shards); i++ {
		sh := &s.shards[i]
		for {
			if err := ctx.Err(); err != nil {
				return fail(err)
			}
			sh.mu.Lock()
			if sh.closed {
				sh.mu.Unlock()
				return ErrClosed
			}
			t0 := time.Now()
			n, done, err := sh.rotateBatch()
			d := time.Since(t0)
			sh.mu.Unlock()
			storeMax(&s.rotHold.bytes, int64(n))
			storeMax(&s.rotHold.nanos, d.Nanoseconds())
			s.rotHold.holds.Add(1)
			if afterRotationBatch != nil {
				afterRotationBatch()
			}
			if err != nil {
				return fail(err)
			}
			if done {
				break
			}
			// The Unlock woke a waiting Rent on this processor; let it run
			// before this goroutine takes the lock again, or it waits for
			// the next batch as well.
			runtime.Gosched()
		}
		r.done = i + 1
	}
	// No entry is under the old round keys any more.
	s.closeMu.Lock()
	if !s.closed.Load() {
		r.prev.Wipe()
	}
	s.cipherSlot = 1 - s.cipherSlot
	s.closeMu.Unlock()
	s.rot = rotation{}
	n := s.rotations.Add(1)
	s.log(slog.LevelInfo, "memshuffle: key rotated", slog.Uint64("rotations", n))
	return nil
}

// switchRotation acquires what rotating every shard takes, then switches
// all of them to seal under s.rot.next. On error no shard has switched.
func (s *Shuffler) switchRotation(ctx context.Context) error {
	r := &s.rot
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		err := sh.prepareRekey()
		sh.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if beforeRotationSwitch != nil {
		beforeRotationSwitch()
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
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

// prepareRekey acquires what rekeying the shard takes: in the
// authenticated modes, a backup buffer as large as the largest entry.
// Counter values are drawn batch by batch; only the exhaustion of the
// 64-bit counter space could refuse them.
func (sh *shard) prepareRekey() error {
	if sh.ov == 0 {
		return nil
	}
	largest := 0
	for i := range sh.nslots {
		if sl := sh.slot(i); sl.state() == stateLive {
			largest = max(largest, int(sl.size)+sh.ov)
		}
	}
	if largest > 0 {
		if _, err := sh.backupFor(largest); err != nil {
			return err
		}
	}
	return nil
}

// rotateBatch re-encrypts under sh.ciph the next resting entries still
// under sh.rot.prev: up to rotateBatchBytes of them, but at least one, and
// looking at no more than rotateBatchSlots slots. It reports the bytes it
// re-encrypted and whether the shard has no entry under the old key left.
// Rented and viewed entries are plaintext: their Return seals them under
// the new key.
func (sh *shard) rotateBatch() (n int, done bool, err error) {
	r := &sh.rot
	if r.prev == nil {
		return 0, true, nil
	}
	prevCTR, isCTR := seal.CTR(r.prev)
	nextCTR, _ := seal.CTR(sh.ciph)
	for range rotateBatchSlots {
		if r.cursor >= sh.nslots {
			break
		}
		i := r.cursor
		sl := sh.slot(i)
		if sl.state() != stateLive || sl.ctr >= r.base {
			r.cursor++
			continue
		}
		ext := int(sl.size) + sh.ov
		if n > 0 && n+ext > rotateBatchBytes {
			return n, false, nil
		}
		if !isCTR {
			// Only an entry larger than any when the rotation began needs
			// more; refused, the rotation stops here, every entry readable.
			if _, err := sh.backupFor(ext); err != nil {
				return n, false, err
			}
		}
		base, err := sh.reserve(sh.ciph.Counters(int(sl.size)))
		if err != nil {
			return n, false, err
		}
		if isCTR {
			// From ciphertext to ciphertext: the plaintext is never formed.
			ctr.Rekey(sh.bytes(sl), prevCTR, sl.ctr, nextCTR, base, &sh.scratch.KS)
		} else if sh.open(i, sl) == nil {
			// An AEAD has no such shortcut: the entry is plaintext, in place
			// and under the shard lock, between these two calls. open left
			// the entry's associated data in the scratch.
			e := sh.extent(sl)
			sh.ciph.Seal(e, e[:sl.size], base, sh.scratch)
		}
		// An entry that fails authentication stays as found: under the new
		// key it keeps failing, and keeps reporting ErrTampered.
		sl.ctr = base
		n += ext
		r.cursor++
	}
	if r.cursor < sh.nslots {
		return n, false, nil
	}
	r.prev = nil
	return n, true, nil
}

// startKeyRotation starts the goroutine of WithKeyRotation; New calls it,
// before the Shuffler is shared.
func (s *Shuffler) startKeyRotation(every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	s.rotStop, s.rotDone = cancel, make(chan struct{})
	go s.rotateLoop(ctx, every, s.rotDone)
}

// stopKeyRotation ends the goroutine of WithKeyRotation, if any, and waits
// for it. A rotation in progress stops at the next shard; the next
// RotateKey would finish it.
func (s *Shuffler) stopKeyRotation() {
	if s.rotStop != nil {
		s.rotStop()
		<-s.rotDone
	}
}

func (s *Shuffler) rotateLoop(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.rotateKey(ctx, nil, nil)
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			s.log(slog.LevelWarn, "memshuffle: scheduled key rotation failed", slog.String("error", err.Error()))
		}
		t.Reset(every)
	}
}

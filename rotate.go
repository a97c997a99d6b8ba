package memshuffle

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
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
// plaintext ever being formed. Entries rented during the rotation are
// plaintext already and are encrypted under the new key when returned.
// Shards rotate one at a time; operations on other shards go on meanwhile.
// Counter values keep counting up across rotations, so even a rotation back
// to an earlier key and salt never reuses a counter block.
//
// Everything a rotation needs (memory for the authenticated modes' backup
// buffers, counter values) is acquired for every shard before any shard
// switches keys. When that fails (ErrLockFailed, ErrOutOfMemory), the
// Shuffler is left as it was, under its old key, and RotateKey can be
// called again. Only when a shard gains an entry larger than any it held
// while the rotation prepared, and memory for it is then refused, can a
// rotation stop part-way: RotateKey returns an error wrapping
// ErrRotationIncomplete and the cause, every entry stays readable (each
// shard is under one of the two keys), and the next RotateKey finishes the
// interrupted rotation before it starts its own.
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

// rotation is a RotateKey in progress: shards before done use next, the
// others prev.
type rotation struct {
	next, prev seal.Cipher
	done       int
}

// beforeRotationSwitch, when set by a test, runs between the two phases of
// a rotation.
var beforeRotationSwitch func()

// finishRotation moves the shards still under s.rot.prev to s.rot.next, in
// two phases: first it acquires what every remaining shard needs, then it
// switches them one by one.
func (s *Shuffler) finishRotation(ctx context.Context) error {
	r := &s.rot
	fresh := r.done == 0
	fail := func(err error) error {
		if fresh {
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
		return fmt.Errorf("%w: %d of %d shards under the new key: %w", ErrRotationIncomplete, r.done, len(s.shards), err)
	}
	plans := make([]rekeyPlan, len(s.shards))
	for i := r.done; i < len(s.shards); i++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		var err error
		plans[i], err = sh.prepareRekey(r.next)
		sh.mu.Unlock()
		if err != nil {
			return fail(err)
		}
	}
	if beforeRotationSwitch != nil {
		beforeRotationSwitch()
	}
	for i := r.done; i < len(s.shards); i++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		err := sh.rekey(r.next, plans[i])
		sh.mu.Unlock()
		if err != nil {
			return fail(err)
		}
		r.done = i + 1
		fresh = false
	}
	// No shard uses the old round keys any more.
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

// rekeyPlan is what prepareRekey acquired for a shard: a run of counter
// values for its entries under the next key.
type rekeyPlan struct{ base, n uint64 }

// needs reports the counter values all unrented entries of the shard take
// under next, and the extent of the largest one.
func (sh *shard) needs(next seal.Cipher) (total uint64, largest int) {
	for i := range sh.nslots {
		if sl := sh.slot(i); sl.state() == stateLive {
			total += next.Counters(int(sl.size))
			largest = max(largest, int(sl.size)+sh.ov)
		}
	}
	return total, largest
}

// prepareRekey acquires what rekeying the shard to next takes: counter
// values and, in the authenticated modes, a backup buffer as large as the
// largest entry.
func (sh *shard) prepareRekey(next seal.Cipher) (rekeyPlan, error) {
	total, largest := sh.needs(next)
	if _, isCTR := seal.CTR(sh.ciph); !isCTR && largest > 0 {
		if _, err := sh.backupFor(largest); err != nil {
			return rekeyPlan{}, err
		}
	}
	base, err := sh.reserve(total)
	if err != nil {
		return rekeyPlan{}, err
	}
	return rekeyPlan{base, total}, nil
}

// rekey moves every unrented entry of the shard to next, with what p
// acquired. Entries made since then may need more counter values or a
// larger backup buffer; those are acquired first, so the shard either moves
// entirely or not at all: every entry of a shard is always under the
// shard's one cipher.
func (sh *shard) rekey(next seal.Cipher, p rekeyPlan) error {
	total, largest := sh.needs(next)
	prevCTR, isCTR := seal.CTR(sh.ciph)
	if !isCTR && largest > 0 {
		if _, err := sh.backupFor(largest); err != nil {
			return err
		}
	}
	base := p.base
	if total > p.n {
		var err error
		if base, err = sh.reserve(total); err != nil {
			return err
		}
	}
	nextCTR, _ := seal.CTR(next)
	for i := range sh.nslots {
		sl := sh.slot(i)
		if sl.state() != stateLive {
			continue
		}
		if isCTR {
			// From ciphertext to ciphertext: the plaintext is never formed.
			ctr.Rekey(sh.bytes(sl), prevCTR, sl.ctr, nextCTR, base, &sh.scratch.KS)
		} else if err := sh.open(i, sl); err == nil {
			// An AEAD has no such shortcut: the entry is plaintext, in place
			// and under the shard lock, between these two calls.
			ext := sh.extent(sl)
			next.Seal(ext, ext[:sl.size], base, sh.scratch)
		}
		// An entry that fails authentication stays as found: under the new
		// key it keeps failing, and keeps reporting ErrTampered.
		sl.ctr = base
		base += next.Counters(int(sl.size))
	}
	sh.ciph = next
	return nil
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

package memshuffle

import (
	"crypto/rand"
	"log/slog"

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
func (s *Shuffler) RotateKey(key *[32]byte, salt *[8]byte) error {
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
	s.closeMu.Lock()
	if s.closed.Load() {
		s.closeMu.Unlock()
		return ErrClosed
	}
	k, sa := s.keyBufs()
	var err error
	if key != nil {
		*k = *key
	} else {
		_, err = rand.Read(k[:])
	}
	if salt != nil {
		*sa = *salt
	} else if err == nil {
		_, err = rand.Read(sa[:])
	}
	if err == nil && s.rotateBroken {
		err = ErrCounterExhausted
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
	prev := s.shards[0].ciph
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		err := sh.rekey(next)
		sh.mu.Unlock()
		if err != nil {
			// Shards before this one use next, the rest prev: both round-key
			// slots are taken, and no later rotation can be done safely.
			s.rotateBroken = true
			return err
		}
	}
	// No shard uses the old round keys any more.
	s.closeMu.Lock()
	if !s.closed.Load() {
		prev.Wipe()
	}
	s.cipherSlot = 1 - s.cipherSlot
	s.closeMu.Unlock()
	n := s.rotations.Add(1)
	s.log(slog.LevelInfo, "memshuffle: key rotated", slog.Uint64("rotations", n))
	return nil
}

// rekey moves every unrented entry of the shard to next. The counter
// values for all of them are reserved first, in one run, so the shard either
// moves entirely or, when the counter space is exhausted, not at all: every
// entry of a shard is always under the shard's one cipher.
func (sh *shard) rekey(next seal.Cipher) error {
	var total uint64
	largest := 0
	for i := range sh.nslots {
		if sl := sh.slot(i); sl.state() == stateLive {
			total += next.Counters(int(sl.size))
			largest = max(largest, int(sl.size)+sh.ov)
		}
	}
	prevCTR, isCTR := seal.CTR(sh.ciph)
	if !isCTR && largest > 0 {
		// Opening an AEAD entry needs the backup buffer; get it now, so that
		// no entry can be left behind under the old key for want of memory.
		if _, err := sh.backupFor(largest); err != nil {
			return err
		}
	}
	base, err := sh.reserve(total)
	if err != nil {
		return err
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

package memshuffle

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"unsafe"
)

// checkInvariants verifies every internal invariant of s. It locks all
// shards, so the Shuffler must not be closed concurrently.
func (s *Shuffler) checkInvariants() error {
	type run struct{ lo, hi uint64 }
	var runs []run
	for si := range s.shards {
		sh := &s.shards[si]
		sh.mu.Lock()
		err := func() error {
			if sh.purged && sh.closed && len(sh.arenas) != 0 {
				for ai, a := range sh.arenas {
					if a != nil && !allZero(a.mem) {
						return fmt.Errorf("shard %d: arena %d not wiped by Purge", si, ai)
					}
				}
				return nil
			}
			if sh.closed {
				if len(sh.arenas) != 0 || sh.nslots != 0 || sh.live != 0 {
					return fmt.Errorf("shard %d: closed but holds state", si)
				}
				return nil
			}
			if uint64(sh.nslots) > uint64(len(sh.chunks))*chunkSlots {
				return fmt.Errorf("shard %d: %d slots in %d chunks", si, sh.nslots, len(sh.chunks))
			}
			// Free list: only free slots, no cycle.
			onFree := make(map[uint32]bool)
			for f := sh.freeHead; f != 0; {
				i := f - 1
				if i >= sh.nslots || onFree[i] {
					return fmt.Errorf("shard %d: free list broken at %d", si, i)
				}
				onFree[i] = true
				sl := sh.slot(i)
				if sl.state() != stateFree || sl.gen() == 0 {
					return fmt.Errorf("shard %d: slot %d on free list with meta %#x", si, i, sl.meta)
				}
				f = sl.off
			}
			type span struct{ off, end int }
			spans := make(map[uint32][]span)
			perArena := make(map[uint32]int)
			live, rented := 0, 0
			var liveBytes, bigBytes int64
			for i := range sh.nslots {
				sl := sh.slot(i)
				switch sl.state() {
				case stateFree:
					if !onFree[i] && sl.gen() != 0 {
						return fmt.Errorf("shard %d: free slot %d (gen %d) is not on the free list", si, i, sl.gen())
					}
					continue
				case stateLive, stateRented, stateViewed:
				case stateExpired:
					if onFree[i] || sl.gen() == 0 || sl.meta&flagExpiry != 0 || sl.size != 0 {
						return fmt.Errorf("shard %d: bad tombstone %d: %+v", si, i, *sl)
					}
					continue
				default:
					return fmt.Errorf("shard %d: slot %d has state %d", si, i, sl.state())
				}
				if onFree[i] {
					return fmt.Errorf("shard %d: live slot %d on the free list", si, i)
				}
				if _, ok := sh.expiry[i]; ok != (sl.meta&flagExpiry != 0) {
					return fmt.Errorf("shard %d: slot %d expiry flag and map disagree", si, i)
				}
				live++
				liveBytes += int64(sl.size)
				if sh.oversize(int(sl.size)+sh.ov, sl.align()) {
					bigBytes += int64(sl.size)
				}
				if int(sl.arena) >= len(sh.arenas) || sh.arenas[sl.arena] == nil {
					return fmt.Errorf("shard %d: slot %d in missing arena %d", si, i, sl.arena)
				}
				a := sh.arenas[sl.arena]
				end := int(sl.off) + int(sl.size) + sh.ov
				if sl.size == 0 || end > a.used || a.used > len(a.mem) {
					return fmt.Errorf("shard %d: slot %d [%d,%d) outside arena used %d/%d", si, i, sl.off, end, a.used, len(a.mem))
				}
				if addr := uintptr(unsafe.Pointer(&a.mem[sl.off])); addr%uintptr(sl.align()) != 0 {
					return fmt.Errorf("shard %d: slot %d at %#x not aligned to %d", si, i, addr, sl.align())
				}
				spans[sl.arena] = append(spans[sl.arena], span{int(sl.off), end})
				perArena[sl.arena]++
				if sl.state() == stateViewed && sl.ctr == 0 {
					return fmt.Errorf("shard %d: slot %d viewed by nobody", si, i)
				}
				if sl.state() != stateLive {
					rented++
				} else {
					runs = append(runs, run{sl.ctr, sl.ctr + sh.ciph.Counters(int(sl.size))})
					if sl.ctr+sh.ciph.Counters(int(sl.size)) > s.ctrs.Next() {
						return fmt.Errorf("shard %d: slot %d uses counter values not yet handed out", si, i)
					}
				}
			}
			for i := range sh.expiry {
				if sl := sh.slot(i); sl.meta&flagExpiry == 0 {
					return fmt.Errorf("shard %d: slot %d in the expiry map without the flag", si, i)
				}
			}
			if bigBytes != sh.bigBytes {
				return fmt.Errorf("shard %d: %d bytes in oversize entries, counted %d", si, bigBytes, sh.bigBytes)
			}
			if live != sh.live || rented != sh.rented || liveBytes != sh.liveBytes {
				return fmt.Errorf("shard %d: counted live=%d rented=%d bytes=%d, recorded %d %d %d",
					si, live, rented, liveBytes, sh.live, sh.rented, sh.liveBytes)
			}
			if err := sh.free.Check(); err != nil {
				return fmt.Errorf("shard %d: %w", si, err)
			}
			type hole struct{ off, end int }
			holes := make(map[uint32][]hole)
			var badHole error
			sh.free.Each(func(ai, off, n uint32) {
				if int(ai) >= len(sh.arenas) || sh.arenas[ai] == nil || sh.arenas[ai].dedicated {
					badHole = fmt.Errorf("shard %d: free space in missing or dedicated arena %d", si, ai)
					return
				}
				holes[ai] = append(holes[ai], hole{int(off), int(off + n)})
			})
			if badHole != nil {
				return badHole
			}
			var mapped, locked, unlocked int64
			for ai, a := range sh.arenas {
				if a == nil {
					continue
				}
				if a.index != uint32(ai) {
					return fmt.Errorf("shard %d: arena %d records index %d", si, ai, a.index)
				}
				mapped += int64(len(a.mem))
				locked += lockedLen(a.reg)
				unlocked += unlockedLen(a.reg)
				if a.live != perArena[uint32(ai)] {
					return fmt.Errorf("shard %d: arena %d counts %d entries, holds %d", si, ai, a.live, perArena[uint32(ai)])
				}
				if a.live == 0 && a != sh.cur && !a.unmapFailed {
					return fmt.Errorf("shard %d: arena %d is empty but still mapped", si, ai)
				}
				// Entries must not overlap, and every byte outside them must be
				// zero: no ciphertext or plaintext is left where an entry was.
				sp := spans[uint32(ai)]
				slices.SortFunc(sp, func(x, y span) int { return x.off - y.off })
				pos := 0
				for _, e := range sp {
					if e.off < pos {
						return fmt.Errorf("shard %d: arena %d entries overlap at %d", si, ai, e.off)
					}
					if !allZero(a.mem[pos:e.off]) {
						return fmt.Errorf("shard %d: arena %d has stale bytes in [%d,%d)", si, ai, pos, e.off)
					}
					pos = e.end
				}
				if !allZero(a.mem[pos:]) {
					return fmt.Errorf("shard %d: arena %d has stale bytes after %d", si, ai, pos)
				}
				if a.top > len(a.mem) || a.used > len(a.mem) || (a != sh.cur && !a.dedicated && a.top != len(a.mem)) {
					return fmt.Errorf("shard %d: arena %d top %d used %d of %d", si, ai, a.top, a.used, len(a.mem))
				}
				// Every byte below top is in exactly one entry or one free
				// extent: freed space is never lost to the index.
				if a.dedicated {
					continue
				}
				hs := holes[uint32(ai)]
				for _, h := range hs {
					sp = append(sp, span(h))
				}
				slices.SortFunc(sp, func(x, y span) int { return x.off - y.off })
				pos = 0
				for _, e := range sp {
					if e.off != pos {
						return fmt.Errorf("shard %d: arena %d: [%d,%d) is neither an entry nor free space", si, ai, pos, e.off)
					}
					pos = e.end
				}
				if pos != a.top {
					return fmt.Errorf("shard %d: arena %d: entries and free space end at %d, top %d", si, ai, pos, a.top)
				}
			}
			if mapped != sh.mapped || locked != sh.lockedBytes || unlocked != sh.unlocked {
				return fmt.Errorf("shard %d: mapped %d locked %d, recorded %d %d %d", si, mapped, locked, sh.mapped, sh.lockedBytes, sh.unlocked)
			}
			return nil
		}()
		sh.mu.Unlock()
		if err != nil {
			return err
		}
	}
	// No two resting entries share a counter value.
	slices.SortFunc(runs, func(x, y run) int {
		switch {
		case x.lo < y.lo:
			return -1
		case x.lo > y.lo:
			return 1
		}
		return 0
	})
	for i := 1; i < len(runs); i++ {
		if runs[i].lo < runs[i-1].hi {
			return fmt.Errorf("counter runs overlap: [%d,%d) and [%d,%d)", runs[i-1].lo, runs[i-1].hi, runs[i].lo, runs[i].hi)
		}
	}
	return nil
}

func allZero(b []byte) bool {
	var z [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(z))
		if !bytes.Equal(b[:n], z[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// rawBytes returns a copy of an entry's bytes as they sit in memory.
func rawBytes(s *Shuffler, h Handle) ([]byte, error) {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	return bytes.Clone(sh.bytes(sl)), nil
}

// addrOf returns where an entry sits now.
func addrOf(s *Shuffler, h Handle) uintptr {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return 0
	}
	defer sh.mu.Unlock()
	return uintptr(unsafe.Pointer(&sh.bytes(sl)[0]))
}

func mustCheck(t testing.TB, s *Shuffler) {
	t.Helper()
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

func newTest(t testing.TB, opts ...Option) *Shuffler {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// memOf returns the memory an entry sits in now, aliased, not copied.
func memOf(s *Shuffler, h Handle) []byte {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil
	}
	defer sh.mu.Unlock()
	return sh.bytes(sl)
}

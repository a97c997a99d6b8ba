package memshuffle

import (
	"sync/atomic"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// Stats is a snapshot of a Shuffler's state and counters. The counters (the
// uint64 fields and ShuffleTime) only grow; use Sub for the change over an
// interval.
type Stats struct {
	Entries int // live entries, rented, viewed or neither
	Rented  int // entries rented now (Rent, Borrow and their forms), exclusively
	Viewed  int // entries with at least one view open (View, BorrowView and their forms)

	LiveBytes int64 // bytes of live entries
	// MappedBytes is the bytes of arenas mapped from the OS, guard pages
	// not counted, with the emptied arenas kept mapped for the next ones
	// the shards need (see Shuffler.Free).
	MappedBytes int64
	Arenas      int // arenas mapped now
	// SlotBytes is the Go heap the shards' slot tables hold: 24 bytes for
	// every slot, live or free, and the free slots' stacks. A table grows
	// to the most entries its shard has held at once; the chunks of 4,096
	// slots past its last live entry go back as they empty (all but one).
	SlotBytes int64
	// BackupBytes is the memory the shards' backup buffers hold, in the
	// authenticated modes: while an entry is decrypted in place, a copy of
	// its ciphertext, which a failed authentication puts back. They hold
	// nothing else and are wiped after each use, so they are plain memory,
	// neither locked nor secret, counted in no other field (but
	// DumpableBytes, where the system will not exclude them from dumps): a
	// rotation needs one per shard, and as locked memory they kept
	// rotations from succeeding at the memory-lock limit. A shard keeps the
	// last one it used, wiped, until a Shuffle, a refusal of memory or its
	// last entry's going gives it back while it has no borrowed entry and
	// no rotation under way.
	BackupBytes int64

	// LockedBytes counts the bytes the Shuffler holds locked into RAM: its
	// arenas, its own region of keys and scratch and the background
	// shuffler's spare regions; with WithSecretMemory, guard pages too,
	// which the kernel counts as locked. On Linux it equals the process's
	// VmLck when nothing else locks memory. UnlockedBytes counts those
	// the system would not lock (or all, with LockNone).
	LockedBytes   int64
	UnlockedBytes int64
	// DumpableBytes counts the bytes LockedBytes, UnlockedBytes and
	// BackupBytes count (arenas, the own region with the keys, spares,
	// backups) that are not excluded from core dumps: zero on Linux unless
	// the system refuses MADV_DONTDUMP (a system call filter that does not
	// allow it), and all of them where the platform has no way to exclude
	// them.
	DumpableBytes int64
	// SharedDumpableBytes counts the bytes of the memory every Shuffler of
	// the process shares that are not excluded from core dumps: the inbox,
	// where RotateKey and CopyFrom take a secret off the caller's stack,
	// and the memory MAC computes in, each mapped by its first use. On
	// Linux it is zero unless the system refuses MADV_DONTDUMP. Like
	// LockLimit it is the process's: every snapshot of every
	// Shuffler reports the same, so it must not be added up across them.
	SharedDumpableBytes int64
	// KeyOffHeap reports that the AES round keys live in the Shuffler's own
	// locked, dump-excluded region. When false (AES256GCM or
	// ChaCha20Poly1305, or no AES-NI, or not amd64) crypto/aes or x/crypto
	// keeps the key schedule on the Go heap.
	KeyOffHeap bool
	// SecretMode reports that callbacks given plaintext run inside
	// runtime/secret's secret.Do (see SecretMode).
	SecretMode bool

	Shuffles       uint64        // completed calls to Shuffle
	ArenasReleased uint64        // arenas returned to the OS
	BytesMoved     uint64        // bytes of entries moved by Shuffle, the background shuffler, shuffle-on-return and compaction
	ShuffleTime    time.Duration // total time spent in Shuffle
	KeyRotations   uint64        // completed key rotations, by RotateKey or WithKeyRotation
	// KeyRotationsFailed counts scheduled rotations (WithKeyRotation)
	// that failed, each logged with WithLogger: where the system refuses
	// the memory a rotation needs (the authenticated modes' backup
	// buffers), say, the entries stay under the old key.
	KeyRotationsFailed uint64
	LockFailures       uint64 // mappings the OS refused to lock
	// LockLimit is the most memory the process may lock (RLIMIT_MEMLOCK
	// on Unix), or -1 where it is unlimited, there is no such limit, or
	// the system will not say (a system call filter refusing getrlimit,
	// on Linux without /proc). Root, with CAP_IPC_LOCK, is not held to it. Every snapshot reports
	// it, a closed or nil Shuffler's too; only the zero Stats, which is no
	// snapshot, has 0 here without a limit of 0.
	LockLimit int64

	// LongRents counts rents and views held longer than the
	// WithRentTracking threshold now; LongRentsSeen counts every one
	// reported so far. Both stay zero without rent tracking.
	LongRents     int
	LongRentsSeen uint64

	Expired  uint64 // entries wiped because their expiry passed
	Tampered uint64 // failed authentications (AEAD modes), of a Rent or View or of a rotation's re-encryption

	ShuffleMax       time.Duration // the longest single Shuffle
	BackgroundCycles uint64        // completed background shuffle cycles
	BackgroundSteps  uint64        // background steps, each holding one shard briefly
	BackgroundMax    time.Duration // the longest a background step held a shard
}

// Sub returns the change in counters from old to st; gauges (entries,
// bytes, arenas) are st's own. old must be an earlier snapshot of the same
// Shuffler: the counters are unsigned and only grow, so with the two
// swapped, or from different Shufflers, a difference wraps around.
func (st Stats) Sub(old Stats) Stats {
	d := st
	d.Shuffles -= old.Shuffles
	d.ArenasReleased -= old.ArenasReleased
	d.BytesMoved -= old.BytesMoved
	d.ShuffleTime -= old.ShuffleTime
	d.KeyRotations -= old.KeyRotations
	d.KeyRotationsFailed -= old.KeyRotationsFailed
	d.LockFailures -= old.LockFailures
	d.LongRentsSeen -= old.LongRentsSeen
	d.Expired -= old.Expired
	d.Tampered -= old.Tampered
	d.BackgroundCycles -= old.BackgroundCycles
	d.BackgroundSteps -= old.BackgroundSteps
	return d
}

// Stats returns a snapshot. The gauges are read with every shard locked at
// once, so they agree with each other: a region moving from the background
// shuffler's spares into a shard's arenas is counted once, not twice or
// not at all. After Close the gauges are zero (once a Borrow function,
// ReadFrom, CopyFrom, ReadAll, ReadUntil or WriteTo that was running has
// returned: the memory of its shard stays mapped until then, see Close,
// and counts in LockedBytes or UnlockedBytes, not in MappedBytes), and the
// counters remain, as do ShuffleMax and BackgroundMax, the longest pauses
// seen. A nil Shuffler reports zero in every field but LockLimit and
// SecretMode, which describe the process and the build (a closed Shuffler
// still reports its KeyOffHeap).
func (s *Shuffler) Stats() Stats {
	// LockLimit, SharedDumpableBytes and SecretMode belong to the process
	// and the build, not to the Shuffler: they are the same in every
	// snapshot.
	st := Stats{SecretMode: secretMode, LockLimit: osmem.LockLimit(), SharedDumpableBytes: sharedDumpable()}
	if !s.made() {
		return st
	}
	s.lockAll()
	s.gauges(&st)
	s.unlockAll()
	s.tally.fill(&st)
	if s.cfg.trackAfter > 0 && !s.closed.Load() {
		st.LongRents = s.eachLongRent(func(Handle, *rentRecord) {})
	}
	return st
}

// tally is a Shuffler's running counts of events and its longest
// pauses, which Stats reports. They are bumped from every goroutine, with
// or without a shard lock, so each is atomic on its own; a Stats snapshot
// may see one count move ahead of another.
type tally struct {
	shuffles        atomic.Uint64
	arenasReleased  atomic.Uint64
	bytesMoved      atomic.Uint64
	shuffleNanos    atomic.Int64
	shuffleMax      atomic.Int64
	rotations       atomic.Uint64
	rotationsFailed atomic.Uint64
	lockFailures    atomic.Uint64
	longRentsSeen   atomic.Uint64
	expired         atomic.Uint64
	tampered        atomic.Uint64
	bgCycles        atomic.Uint64
	bgSteps         atomic.Uint64
	bgStepMax       atomic.Int64
}

// fill copies the counts into st.
func (t *tally) fill(st *Stats) {
	st.Shuffles = t.shuffles.Load()
	st.ArenasReleased = t.arenasReleased.Load()
	st.BytesMoved = t.bytesMoved.Load()
	st.ShuffleTime = time.Duration(t.shuffleNanos.Load())
	st.ShuffleMax = time.Duration(t.shuffleMax.Load())
	st.KeyRotations = t.rotations.Load()
	st.KeyRotationsFailed = t.rotationsFailed.Load()
	st.LockFailures = t.lockFailures.Load()
	st.LongRentsSeen = t.longRentsSeen.Load()
	st.Expired = t.expired.Load()
	st.Tampered = t.tampered.Load()
	st.BackgroundCycles = t.bgCycles.Load()
	st.BackgroundSteps = t.bgSteps.Load()
	st.BackgroundMax = time.Duration(t.bgStepMax.Load())
}

// gauges adds up the gauges into st; the caller holds every shard's lock.
func (s *Shuffler) gauges(st *Stats) {
	for i := range s.shards {
		sh := &s.shards[i]
		st.Entries += sh.Counts.Live()
		st.Rented += sh.Counts.Rented() - sh.flight.counted() // flights are no rents
		st.Viewed += sh.Counts.Viewed()
		st.LiveBytes += sh.Counts.LiveBytes()
		st.MappedBytes += sh.Arenas.Mapped()
		st.SlotBytes += sh.Slots.Bytes()
		if b := sh.backup; b != nil {
			st.BackupBytes += int64(len(b.Data))
			st.DumpableBytes += store.DumpableLen(b)
		}
		st.LockedBytes += sh.Arenas.Locked()
		st.UnlockedBytes += sh.Arenas.Unlocked()
		st.DumpableBytes += sh.Arenas.Dumpable()
		if sh.ciph != nil {
			st.KeyOffHeap = sh.ciph.OffHeap()
		}
		for _, a := range sh.Arenas.List() {
			if a != nil {
				st.Arenas++
			}
		}
	}
	st.MappedBytes += s.aux.IdleBytes()
	st.LockedBytes += s.aux.Locked()
	st.UnlockedBytes += s.aux.Unlocked()
	st.LockedBytes += s.ownLocked.Load()
	st.UnlockedBytes += s.ownUnlocked.Load()
	st.DumpableBytes += s.aux.Dumpable() + s.ownDumpable.Load()
}

// sharedDumpable is Stats.SharedDumpableBytes. The inbox and the MACs'
// memory hold secrets only during a call, but in the clear, so a refused
// exclusion there counts as it does for the arenas.
func sharedDumpable() int64 {
	var n int64
	if ib := (*inboxMem)(atomic.LoadPointer(&inbox)); ib != nil && ib.dumpable {
		n += int64(len(ib.data))
	}
	if m := macMem.Load(); m != nil && m.dumpable {
		n += int64(len(m.data))
	}
	return n
}

// lockAll locks every shard. Shards are only ever held together by lockAll,
// in index order.
func (s *Shuffler) lockAll() {
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
}

func (s *Shuffler) unlockAll() {
	for i := range s.shards {
		s.shards[i].mu.Unlock()
	}
}

// Size reports the entry's size in bytes. It fails with ErrInvalidHandle
// for a freed, forged or another Shuffler's handle, ErrExpired for an entry
// whose expiry passed, and ErrClosed after Close or Purge.
func (s *Shuffler) Size(h Handle) (int, error) {
	sh, sl, err := s.lookupLive(h)
	if err != nil {
		return 0, err
	}
	n := int(sl.Size)
	sh.mu.Unlock()
	return n, nil
}

// Valid reports whether h refers to a live entry of s: not freed, not
// expired.
func (s *Shuffler) Valid(h Handle) bool {
	return s.stillLive(h) == nil
}

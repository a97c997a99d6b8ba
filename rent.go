package memshuffle

import (
	"context"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// Rent decrypts the entry in place and returns a pointer to its first
// element as a T. The entry stays decrypted, and never moves, until Return;
// while rented, no other Rent, View or Free of it succeeds (ErrBusy). The
// pointer must not be used after Return, and after Close the memory is gone.
// T must hold no Go pointers, be no larger than the entry, and need no
// stricter alignment than the entry was allocated with (ErrTypeMismatch).
//
// Nothing stops a write through a pointer or slice kept after Return, and
// what it does depends on what happened since. While the entry rests where
// it was, the write lands in its ciphertext: with the default AES256CTR
// cipher the entry then silently decrypts to changed bytes; AES256GCM and
// ChaCha20Poly1305 detect it, and the next Rent or View fails with
// ErrTampered. Once a Shuffle, a background step or a moving Return has
// taken the entry elsewhere, the write lands in wiped memory, in another
// entry moved or allocated into that place (which then decrypts to changed
// bytes, or fails with ErrTampered), or, when its arena was unmapped,
// faults: the process dies, with no panic to recover.
// The Borrow functions cannot be misused this way; an authenticated cipher
// at least reports it.
func Rent[T any](s *Shuffler, h Handle) (*T, error) {
	p, _, err := borrow[T](context.Background(), failIfBusy, s, h, exclusive, unpinned)
	return p, err
}

// RentSlice is Rent for the whole entry as a slice of T. The entry's size
// must be a multiple of T's size (ErrTypeMismatch). The same rules hold for
// the slice as for Rent's pointer; in particular it must not be appended to
// beyond its capacity, which is the entry's size.
func RentSlice[T any](s *Shuffler, h Handle) ([]T, error) {
	b, _, err := borrowSlice[T](context.Background(), failIfBusy, s, h, exclusive, unpinned)
	return b, err
}

// RentContext is Rent that, instead of failing with ErrBusy, waits until the
// entry is free or ctx is done; then it returns ctx's error (or, should
// ctx report none, an error matching context.Canceled). ctx is looked at
// only when the entry is busy: a free entry is rented even if ctx is done
// already, as a buffered channel's receive in a select with ctx.Done can
// win. An entry whose expiry passes meanwhile answers ErrExpired then, as
// it does any call. A panic in ctx's Done or Err is returned as an error
// matching ErrPanicked.
func RentContext[T any](ctx context.Context, s *Shuffler, h Handle) (*T, error) {
	p, _, err := borrow[T](ctx, waitIfBusy, s, h, exclusive, unpinned)
	return p, err
}

// RentSliceContext is RentSlice that waits like RentContext.
func RentSliceContext[T any](ctx context.Context, s *Shuffler, h Handle) ([]T, error) {
	b, _, err := borrowSlice[T](ctx, waitIfBusy, s, h, exclusive, unpinned)
	return b, err
}

// View is a shared, read-only rent: up to 65,535 views of an entry may be
// open at once (one more fails with ErrBusy, even in ViewContext, which
// does not wait for a view to end). The first View decrypts it, later ones get the same
// plaintext at no cost, and ReturnView by the last viewer encrypts it again.
// Writers are exclusive: Rent and Free of a viewed entry fail with ErrBusy,
// and View of a rented entry does too. While a writer waits for the entry
// in RentContext, a new View fails with ErrBusy as well, and ViewContext
// waits behind the writer: readers whose views overlap cannot keep a writer
// out. The pointer must not be written through, and must not be used after
// the caller's ReturnView.
func View[T any](s *Shuffler, h Handle) (*T, error) {
	p, _, err := borrow[T](context.Background(), failIfBusy, s, h, shared, unpinned)
	return p, err
}

// ViewSlice is View for the whole entry as a slice of T; see RentSlice for
// the size rule.
func ViewSlice[T any](s *Shuffler, h Handle) ([]T, error) {
	b, _, err := borrowSlice[T](context.Background(), failIfBusy, s, h, shared, unpinned)
	return b, err
}

// ViewContext is View that waits, instead of failing with ErrBusy, while
// the entry is rented, until it is returned or ctx is done, as RentContext
// does: an entry whose expiry passes meanwhile answers ErrExpired then, and
// an entry that is free is viewed even if ctx is done already.
func ViewContext[T any](ctx context.Context, s *Shuffler, h Handle) (*T, error) {
	p, _, err := borrow[T](ctx, waitIfBusy, s, h, shared, unpinned)
	return p, err
}

// ViewSliceContext is ViewSlice that waits like ViewContext.
func ViewSliceContext[T any](ctx context.Context, s *Shuffler, h Handle) ([]T, error) {
	b, _, err := borrowSlice[T](ctx, waitIfBusy, s, h, shared, unpinned)
	return b, err
}

// borrow and borrowSlice return the borrowed entry both as the caller's
// type and as bytes, which is what ending a pinned borrow wipes.
func borrow[T any](ctx context.Context, wait waitMode, s *Shuffler, h Handle, kind borrowKind, pin pinning) (*T, []byte, error) {
	var z *T          // not a T: see Alloc
	if !isByte[T]() { // see typeCheck
		if err := typeCheck[T](); err != nil {
			return nil, nil, err
		}
	}
	ti := typeInfo{size: int(unsafe.Sizeof(*z)), align: int(unsafe.Alignof(*z))}
	mem, err := s.borrow(ctx, wait, h, ti, onePointer, kind, pin)
	if err != nil {
		return nil, nil, err
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(mem))), mem, nil
}

func borrowSlice[T any](ctx context.Context, wait waitMode, s *Shuffler, h Handle, kind borrowKind, pin pinning) ([]T, []byte, error) {
	var z *T          // not a T: see Alloc
	if !isByte[T]() { // see typeCheck
		if err := typeCheck[T](); err != nil {
			return nil, nil, err
		}
	}
	ti := typeInfo{size: int(unsafe.Sizeof(*z)), align: int(unsafe.Alignof(*z))}
	mem, err := s.borrow(ctx, wait, h, ti, wholeSlice, kind, pin)
	if err != nil {
		return nil, nil, err
	}
	// The size of T as a constant, not ti.size: every type of T's shape has
	// it, so for bytes the division disappears at compile time instead of
	// costing a hardware divide on every borrow.
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(mem))), len(mem)/int(unsafe.Sizeof(*z))), mem, nil
}

// pinning says whether a borrow holds its shard's memory mapped until it
// ends. The Borrow functions and the fills of ReadFrom and CopyFrom pin: they
// run the caller's code on the entry and end the borrow themselves, so Close
// can leave the unmapping to them (see Shuffler.endPinned). Rent and View
// do not: their callers may never return, and Close unmaps under them.
type pinning uint8

const (
	unpinned pinning = iota
	pinned
	// pinnedQuiet is pinned, with the events the borrow raises left for
	// the caller to hand to the logger (see borrowKeyQuiet).
	pinnedQuiet
)

// borrowKind says whether a borrow is a rent or a view.
type borrowKind uint8

const (
	exclusive borrowKind = iota // a rent: one borrower, who may write
	shared                      // a view: any number of readers at once
)

// waitMode says what a borrow of a busy entry does.
type waitMode uint8

const (
	failIfBusy waitMode = iota // return ErrBusy at once
	waitIfBusy                 // wait for a return, until ctx is done
)

// shape says how a borrow hands out the entry: as a pointer to one T,
// which may be smaller than the entry, or as a slice of T covering all of
// it, whose size must then be a multiple of T's.
type shape uint8

const (
	onePointer shape = iota
	wholeSlice
)

// borrow rents (or, shared, views) an entry. With failIfBusy a busy entry
// is an error; with waitIfBusy, borrow waits for the entry's shard to see a
// return, until ctx is done (borrowWaiting). The first is every Rent's and
// View's path, and keeps to what it needs.
func (s *Shuffler) borrow(ctx context.Context, wait waitMode, h Handle, ti typeInfo, form shape, kind borrowKind, pin pinning) ([]byte, error) {
	if wait == waitIfBusy {
		return s.borrowWaiting(ctx, h, ti, form, kind, pin)
	}
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil, err
	}
	// refuse, written out for the common answer
	if st := sl.State(); st != store.StateLive || (kind == shared && !sh.Waiters.NoWriters()) {
		if err := sh.refuse(sl, h, kind); err != nil {
			sh.mu.Unlock()
			return nil, err
		}
	}
	mem, err := sh.take(sl, h, ti, form, kind)
	if err == nil && pin != unpinned {
		sh.pins++
	}
	sh.mu.Unlock()
	// A failed authentication, or a refused lock: the lock of the backup
	// buffer a first open maps is refused without an error under
	// LockBestEffort, so a borrow that succeeds may leave an event too.
	// Another goroutine's events may wait as well.
	if s.out.pending.Load() && pin != pinnedQuiet {
		s.flushLogBorrowed(h, mem, kind, pin, err)
	}
	return mem, err
}

// refuse reports why slot sl, just looked up for h, cannot be borrowed as
// kind now, under the shard lock: ErrExpired or ErrBusy, or nil when it
// can.
//
// lookup has tested the entry's expiry once already: a live entry past its
// deadline is wiped and now answers Expired. Only a borrowed one, which
// keeps its state until its return wipes it, needs the test again, as
// lookupLive would make it.
//
// A writer that waits is counted in sh.Waiters, and while one is, new
// views of the entry count it as busy too: otherwise readers whose views
// overlap would keep a writer out for as long as they keep coming.
func (sh *shard) refuse(sl *store.Slot, h Handle, kind borrowKind) error {
	st := sl.State()
	if st == store.StateExpired || (st != store.StateLive && sh.expired(h.slot(), sl, nil)) {
		return ErrExpired
	}
	if st == store.StateRented || (st == store.StateViewed && kind == exclusive) ||
		(kind == shared && !sh.Waiters.NoWriters() && sh.Waiters.Writers(h.id) > 0) {
		return ErrBusy
	}
	return nil
}

// ctxDone returns ctx.Done(), or an error matching ErrPanicked if the
// caller's context panics there.
func ctxDone(ctx context.Context) (done <-chan struct{}, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("the context's Done", p)
		}
	}()
	return ctx.Done(), nil
}

// ctxErr returns why ctx, whose Done is closed, is done: never nil, even
// for a context that breaks its contract and reports no error, since a
// nil error would pass off a borrow that never happened as one that did.
// A panic of ctx's Err is an error matching ErrPanicked.
func ctxErr(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("the context's Err", p)
		}
	}()
	if err = ctx.Err(); err == nil {
		err = errDoneWithoutErr
	}
	return err
}

// errDoneWithoutErr is ctxErr's answer for a context whose Done is closed
// while its Err is nil: a cancellation, then.
var errDoneWithoutErr = fmt.Errorf("memshuffle: the context is done but reports no error: %w", context.Canceled)

// borrowWaiting is borrow with waitIfBusy: it waits for a busy entry's
// shard to see a return, until ctx is done.
func (s *Shuffler) borrowWaiting(ctx context.Context, h Handle, ti typeInfo, form shape, kind borrowKind, pin pinning) ([]byte, error) {
	if ctx == nil {
		return nil, fmt.Errorf("%w: nil context", ErrNilArgument)
	}
	// Asked once, before anything is queued: the context is the caller's
	// code, and a panic in it must find nothing to undo.
	done, err := ctxDone(ctx)
	if err != nil {
		return nil, err
	}
	queued := false // this writer is counted in sh.Waiters
	for {
		sh, sl, err := s.lookup(h)
		if err == nil {
			if err = sh.refuse(sl, h, kind); err == ErrExpired {
				sh.mu.Unlock()
			}
		}
		if err != nil && err != ErrBusy {
			if queued {
				s.dequeueWriter(h)
			}
			return nil, err
		}
		if err == ErrBusy {
			if kind == exclusive && !queued {
				sh.Waiters.QueueWriter(h.id, 1)
				queued = true
			}
			wake := sh.Waiters.Chan(h.id)
			// Woken at the entry's deadline too, if it has one, to answer
			// ErrExpired then: no call may come meanwhile to find it due.
			var timer *time.Timer
			var due <-chan time.Time
			if d, ok := sh.Expiries.Get(h.slot()); ok {
				timer = time.NewTimer(until(d, s.now()))
				due = timer.C
			}
			sh.mu.Unlock()
			ended := false
			select {
			case <-wake:
			case <-due:
			case <-done:
				ended = true
			}
			if timer != nil {
				timer.Stop()
			}
			if !ended {
				continue
			}
			if queued {
				s.dequeueWriter(h)
			}
			return nil, ctxErr(ctx)
		}
		if queued {
			sh.Waiters.QueueWriter(h.id, -1)
		}
		mem, err := sh.take(sl, h, ti, form, kind)
		if err == nil && pin != unpinned {
			sh.pins++
		}
		if err != nil && queued {
			// Readers held back for this writer would otherwise sleep on
			// until the entry's next return.
			sh.Waiters.Wake(h.id)
		}
		sh.mu.Unlock()
		if s.out.pending.Load() && pin != pinnedQuiet { // as in borrow
			s.flushLogBorrowed(h, mem, kind, pin, err)
		}
		return mem, err
	}
}

// flushLogBorrowed is flushLog after a borrow of h, whose bytes are mem,
// that took the entry unless err. A handler that ends the goroutine with
// runtime.Goexit (t.FailNow does) never lets the borrow return: the entry
// is then given back, as ReadFrom frees the entry of a reader that does,
// rather than left rented or viewed in the clear, and, pinned, keeping
// Close from unmapping its shard, with nobody to end the borrow. A
// handler's panic is the logger's to recover (see log).
func (s *Shuffler) flushLogBorrowed(h Handle, mem []byte, kind borrowKind, pin pinning, err error) {
	if err != nil {
		s.flushLogSlow()
		return
	}
	s.flushLogUndoing(func() {
		switch {
		case pin != unpinned:
			_ = s.endPinned(h, mem, kind)
		case kind == shared:
			_ = s.ReturnView(h)
		default:
			_ = s.Return(h)
		}
	})
}

// until is the time from now to deadline d, both Unix nanoseconds: zero
// when d has passed, and at most math.MaxInt64 where d - now overflows (a
// clock before 1970 and a deadline past 2262), which went negative and
// woke a waiter at once, again and again.
func until(d, now int64) time.Duration {
	switch {
	case d <= now:
		return 0
	case now < 0 && d > math.MaxInt64+now:
		return math.MaxInt64
	}
	return time.Duration(d - now)
}

// dequeueWriter counts out a writer that gave up waiting for h, and wakes
// the readers it held back.
func (s *Shuffler) dequeueWriter(h Handle) {
	sh := &s.shards[h.shard()]
	sh.mu.Lock()
	sh.Waiters.QueueWriter(h.id, -1)
	sh.Waiters.Wake(h.id)
	sh.mu.Unlock()
}

// take does the rent or view of an entry that is free to borrow, under the
// shard lock, which it lets go of while a large entry is decrypted in
// flight (see flight).
func (sh *shard) take(sl *store.Slot, h Handle, ti typeInfo, form shape, kind borrowKind) ([]byte, error) {
	size := int(sl.Size)
	// Most borrows are of bytes: no division for them.
	if ti.size > size || ti.align > sl.Align() || (form == wholeSlice && ti.size > 1 && size%ti.size != 0) {
		return nil, ErrTypeMismatch
	}
	mem := sh.Bytes(sl)
	if sl.State() == store.StateViewed {
		if !sl.AddViewer() {
			return nil, fmt.Errorf("%w: %d views of the entry are open, the most it allows", ErrBusy, store.MaxViewers)
		}
		return mem, nil
	}
	// open, written out for the default cipher's direct path (see
	// shortCTR): this is the path of every Rent and first View.
	c := sh.cipherOf(sl)
	if k := shortCTR(c, len(mem)); k != nil && len(mem) < unlockedMin {
		k.XORShortInPlace(mem, sl.Ctr(), &sh.scratch.KS)
	} else if k := sh.unlockedCTR(c, len(mem)); k != nil {
		// A second viewer waits for it to land as plaintext.
		sh.xorUnlocked(k, mem, sl.Ctr(), h.slot(), sl)
		if sh.dueNow(h.slot(), sl) {
			// A sweep found its deadline due in flight, and held it for
			// the end of this borrow: the plaintext is wiped instead of
			// handed out past the deadline.
			return nil, ErrExpired
		}
	} else if moved, err := sh.openInFlight(h.slot(), sl); err != nil {
		return nil, err // ErrExpired too for a deadline found due in flight
	} else if moved {
		mem = sh.Bytes(sl)
	} else if err := sh.open(h.slot(), sl); err != nil {
		return nil, err
	}
	if kind == shared {
		sl.SetState(store.StateViewed)
		sl.AddViewer() // the first of MaxViewers, so it is counted
		sh.Counts.AddViewed(1)
	} else {
		sl.SetState(store.StateRented)
		sh.Counts.AddRented(1)
	}
	if sh.s.cfg.trackAfter > 0 { // the test track makes, without the call
		sh.track(h)
	}
	return mem, nil
}

// Return re-encrypts a rented entry under a fresh run of counter values, so
// the same plaintext never gives the same ciphertext twice, and ends the
// rent. With shuffle-on-borrow-return enabled the entry also moves to new
// space and the space it left is wiped. Pointers and slices from the rent
// must not be used afterwards. A rent is known by its handle alone: a
// Return for a rent that already ended fails with ErrNotRented only while
// nobody else has rented the entry since; otherwise it ends the newer rent,
// so call Return exactly once per Rent (the Borrow functions do). An entry that is viewed, not rented, is
// returned with ReturnView (ErrNotRented).
//
// Once the Shuffler's counter space is used up, an entry cannot be
// encrypted again: Return, and the last ReturnView, then wipe it, free h
// and report ErrCounterExhausted.
func (s *Shuffler) Return(h Handle) error {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return err
	}
	// Unlocked by hand, not deferred: a defer costs this path, every
	// Return's, a closure call, and nothing under the lock panics.
	err = sh.endRent(sl, h)
	sh.mu.Unlock()
	s.flushLog() // a moving Return maps memory
	return err
}

// endRent is Return under the shard lock.
func (sh *shard) endRent(sl *store.Slot, h Handle) error {
	switch sl.State() {
	case store.StateRented:
		return sh.seal(sl, h)
	case store.StateExpired:
		return ErrExpired
	}
	return ErrNotRented
}

// ReturnView ends one View. When the last viewer returns, the entry is
// encrypted again as by Return. ReturnView of an entry nobody views returns
// ErrNotRented.
func (s *Shuffler) ReturnView(h Handle) error {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return err
	}
	err = sh.endView(sl, h) // unlocked by hand, as in Return
	sh.mu.Unlock()
	s.flushLog()
	return err
}

// endView is ReturnView under the shard lock.
func (sh *shard) endView(sl *store.Slot, h Handle) error {
	if sl.State() == store.StateExpired {
		return ErrExpired
	}
	if sl.State() != store.StateViewed {
		return ErrNotRented
	}
	if sl.Viewers() > 1 {
		sl.DropViewer()
		if sh.dueNow(h.slot(), sl) {
			return ErrExpired
		}
		return nil
	}
	return sh.seal(sl, h)
}

// seal encrypts a borrowed entry again and makes it live, under the shard
// lock, which it lets go of while a large entry is encrypted in flight
// (see flight). What only some Returns do (wipe an entry that expired while
// borrowed, move it to new space) is in functions of its own, so that
// every Return's path keeps a small frame.
func (sh *shard) seal(sl *store.Slot, h Handle) error {
	was := sl.State() // rented or viewed, so dueNow applies
	if sh.dueNow(h.slot(), sl) {
		return sh.sealExpired(sl, h, was)
	}
	src := sh.Bytes(sl)
	// The default cipher's direct path (see shortCTR), decided once for
	// both the counter values and the encryption: this is every Return's
	// path.
	k := shortCTR(sh.ciph, len(src))
	n := sh.sealCounters(k, len(src))
	base, ok := sh.nextCounters(n)
	if !ok {
		var err error
		if base, err = sh.reserve(n); err != nil {
			return sh.sealExhausted(sl, h, was, err)
		}
	}
	moved := false
	if sh.s.onReturn.Load() {
		// A move that fails may have let go of the lock, to map memory:
		// the deadline is looked at again, as after any flight.
		if moved = sh.sealMoving(k, src, base, h, sl); !moved && sh.dueNow(h.slot(), sl) {
			return sh.sealExpired(sl, h, was)
		}
	}
	if !moved {
		if k != nil && len(src) < unlockedMin { // sealTo, written out
			k.XORShortInPlace(src, base, &sh.scratch.KS)
		} else if sh.sealInFlight(sh.Extent(sl), len(src), base, h.slot(), sl) {
			if sh.dueNow(h.slot(), sl) { // its deadline passed in flight
				return sh.sealExpired(sl, h, was)
			}
		} else {
			sh.sealTo(k, sh.Extent(sl), src, base, h.slot(), sl)
		}
	} else if sh.dueNow(h.slot(), sl) { // a large entry moves in flight
		return sh.sealExpired(sl, h, was)
	}
	sl.SetCtr(base)
	sl.SetState(store.StateLive)
	sh.endBorrow(h, was)
	return nil
}

// sealExpired is seal for an entry that expired while borrowed: the
// plaintext is wiped, not encrypted.
//
// An arena the wipe empties (an oversize entry's own) is unmapped with the
// shard unlocked: the entry is expired by then, and the calls given its
// Handle answer ErrExpired.
func (sh *shard) sealExpired(sl *store.Slot, h Handle, was uint32) error {
	var later store.UnmapList
	sh.expire(h.slot(), sl, &later)
	sh.endBorrow(h, was)
	sh.unmapInFlight(later)
	return ErrExpired
}

// sealExhausted is seal for an entry that cannot be encrypted again, the
// counter space being used up (err). Kept, it would stay plaintext for
// good, in a borrow nobody can end and Free refuses; it is wiped and its
// Handle freed instead, as an expired one is wiped.
func (sh *shard) sealExhausted(sl *store.Slot, h Handle, was uint32, err error) error {
	sh.Drop(sl, nil)
	sh.endBorrow(h, was)
	sh.freeSlot(h.slot(), sl)
	return fmt.Errorf("%w: the entry could not be encrypted again and was wiped", err)
}

// sealMoving is seal's move of the borrowed entry src to new space, with
// shuffle-on-borrow-return on. It reports false, having done nothing,
// when the entry is to be encrypted where it is instead.
func (sh *shard) sealMoving(k *ctr.Cipher, src []byte, base uint64, h Handle, sl *store.Slot) bool {
	if u := sh.unlockedCTR(sh.ciph, len(src)); u != nil {
		return sh.sealMovedUnlocked(u, src, base, h.slot(), sl)
	}
	if sh.unlockedAEAD(len(src)) {
		return sh.sealMovedUnlocked(nil, src, base, h.slot(), sl)
	}
	return sh.sealMoved(k, src, base, h, sl)
}

// sealMoved encrypts the borrowed entry src, of slot sl, under the run of
// counter values at base straight into new space, and wipes its old bytes:
// the plaintext is never copied. It reports false, and does nothing, when
// there is no memory for the move; encrypting in place then keeps the
// entry safe, moving it is only a bonus.
//
// When the move needs a new arena, the entry moves in flight instead
// (sealMovedUnlocked), which maps the arena with the shard unlocked: under
// the lock, mapping and locking one held the shard's other entries for
// milliseconds every time an arena filled up.
func (sh *shard) sealMoved(k *ctr.Cipher, src []byte, base uint64, h Handle, sl *store.Slot) bool {
	// An empty current arena the new place replaces goes to later too.
	var later store.UnmapList
	was := sh.Arenas.DeferMap(true)
	a, off, err := sh.Place(len(src)+sh.Overhead(), sl.Align(), &later)
	sh.Arenas.DeferMap(was)
	if _, ok := err.(*store.NeedMap); ok && sh.flight.draining == 0 {
		ck, _ := seal.CTR(sh.ciph) // nil in the authenticated modes
		return sh.sealMovedUnlocked(ck, src, base, h.slot(), sl)
	}
	if err != nil {
		return false
	}
	sh.sealTo(k, a.Mem[off:off+len(src)+sh.Overhead()], src, base, h.slot(), sl)
	sh.Rehome(sl, a, off, &later)
	sh.s.tally.bytesMoved.Add(uint64(len(src)))
	sh.sweepAfterMove(&later)
	sh.unmapAside(h.slot(), sl, later)
	return true
}

// unmapAside unmaps the regions of arenas that a Return's move of slot i,
// which holds sl, emptied, with the shard unlocked and the entry in flight
// meanwhile, so that calls given its Handle wait for it as they would
// have waited for the lock: under the lock, the unmap of an emptied arena
// of a few MiB held the shard's other entries for milliseconds. While a
// drain waits, no entry takes off, and they are unmapped under the lock.
func (sh *shard) unmapAside(i uint32, sl *store.Slot, later store.UnmapList) {
	if len(later) == 0 {
		return
	}
	if sh.flight.draining > 0 {
		_ = later.UnmapAll(&sh.s.aux) // a refusal is kept for a retry
		sh.relock()
		return
	}
	sh.takeOff(i, sl)
	sh.unmapInFlight(later)
	sh.land(i, sl)
}

// sweepAfterMove compacts after a moving Return, but only while arenas
// hold more dead space than live data, so entries are not moved for
// nothing.
//
// It maps no arena: a sweep that needs one stops, as the next Return's
// move maps one in flight. Arenas it empties go to later.
func (sh *shard) sweepAfterMove(later *store.UnmapList) {
	if sh.Arenas.Mapped() > 2*sh.Counts.LiveBytes()+int64(2*sh.s.cfg.arenaSize) {
		was := sh.Arenas.DeferMap(true)
		sh.Sweep(sweepSlots, later)
		sh.Arenas.DeferMap(was)
	}
}

// endBorrow does the bookkeeping of a borrow that ended, and wakes waiters;
// state is the slot's state while it was borrowed, rented or viewed.
func (sh *shard) endBorrow(h Handle, state uint32) {
	if state == store.StateViewed {
		sh.Counts.AddViewed(-1)
	} else {
		sh.Counts.AddRented(-1)
	}
	sh.untrack(h)
	sh.Waiters.Wake(h.id)
}

// open decrypts slot i's entry in place. In the AEAD modes a failed
// authentication leaves the entry's bytes exactly as they were, for
// inspection, and reports ErrTampered.
func (sh *shard) open(i uint32, sl *store.Slot) error {
	ext := sh.Extent(sl)
	data := ext[:sl.Size]
	c := sh.cipherOf(sl)
	if k := shortCTR(c, len(ext)); k != nil { // see sealTo
		k.XORShort(data, ext, sl.Ctr(), &sh.scratch.KS)
		return nil
	}
	if sh.Overhead() == 0 { // CTR: no associated data to set
		return c.Open(data, ext, sl.Ctr(), sh.scratch)
	}
	sh.setAD(i, sl)
	// The AEADs clear their output when authentication fails; keep the
	// ciphertext to put back.
	backup, err := sh.backupFor(len(ext))
	if err != nil {
		return err
	}
	copy(backup, ext)
	err = c.Open(data, ext, sl.Ctr(), sh.scratch)
	if err != nil {
		copy(ext, backup)
	}
	osmem.Wipe(backup)
	if err != nil {
		sh.s.tamperDetected(makeHandle(sh.s.id, sh.index, i, sl.Gen()))
		return ErrTampered
	}
	return nil
}

// backupFor returns n bytes of the shard's off-heap backup buffer, mapping
// a larger one when needed (see mapBackup). The system's refusal is
// ErrOutOfMemory.
func (sh *shard) backupFor(n int) ([]byte, error) {
	if sh.backup == nil || len(sh.backup.Data) < n {
		// The old buffer goes first: it holds nothing between uses (each
		// wipes it), and the room it frees may be what the larger one
		// needs.
		if sh.backup != nil {
			sh.dropBackup()
		}
		reg, err := sh.s.mapBackup(n)
		if err != nil {
			return nil, err
		}
		sh.backup = reg
	}
	return sh.backup.Data[:n], nil
}

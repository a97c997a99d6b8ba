package memshuffle

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// errNilFunc is what the Borrow functions return for a nil fn, before
// borrowing anything.
var errNilFunc = fmt.Errorf("%w: nil function", ErrNilArgument)

// Borrow rents the entry as a *T, calls fn with it, and returns the entry,
// also when fn panics: the entry is encrypted again before the panic goes
// on. It returns fn's error, or Rent's or Return's, and ErrNilArgument for
// a nil fn. fn must not keep the pointer.
//
// Close and Purge may run while fn does, from another goroutine or from fn
// itself: the entry is wiped, but its memory stays mapped until fn returns,
// so fn never faults; whatever fn wrote is wiped when it returns, and Borrow
// returns ErrClosed, also when fn returned an error of its own: what fn
// computed may come from the wiped memory. An error of fn's that matches
// ErrPanicked (a reader's panic that ReadFrom reported) is joined to it
// instead. The same holds for every Borrow function.
//
// A stray Return of h while fn runs (a second Return of an earlier Rent,
// from anywhere) is not refused: like any Return, it ends the rent it
// finds, which is fn's. fn then writes into ciphertext, which corrupts the
// entry, and once a Shuffle has moved the entry, into memory that may be
// unmapped, which faults; Borrow returns ErrNotRented. A stray ReturnView
// does the same to a BorrowView function's view. Return exactly once per
// Rent, and only what you rented.
func Borrow[T any](s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, l, err := lend[T](context.Background(), failIfBusy, s, h, exclusive)
	return call(p, l, err, fn)
}

// BorrowSlice is Borrow for the whole entry as a []T.
func BorrowSlice[T any](s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, l, err := lendSlice[T](context.Background(), failIfBusy, s, h, exclusive)
	return call(b, l, err, fn)
}

// BorrowView views the entry as a *T, calls fn with it, and ends the view,
// also when fn panics. Any number of BorrowView calls on one entry may run at
// once, from different goroutines; fn must not ask for another view of the
// same entry, which fails with ErrBusy while a writer waits (see View). fn
// must not write through the pointer or keep it. Close and Purge during fn
// are handled as for Borrow.
func BorrowView[T any](s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, l, err := lend[T](context.Background(), failIfBusy, s, h, shared)
	return call(p, l, err, fn)
}

// BorrowViewSlice is BorrowView for the whole entry as a []T.
func BorrowViewSlice[T any](s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, l, err := lendSlice[T](context.Background(), failIfBusy, s, h, shared)
	return call(b, l, err, fn)
}

// A loan is a pinned borrow: one the library itself ends, with endPinned,
// or endPinnedQuiet for a borrow whose events wait (pinnedQuiet).
type loan struct {
	s    *Shuffler
	h    Handle
	mem  []byte
	kind borrowKind
	pin  pinning // pinned or pinnedQuiet
}

func lend[T any](ctx context.Context, wait waitMode, s *Shuffler, h Handle, kind borrowKind) (*T, loan, error) {
	p, mem, err := borrow[T](ctx, wait, s, h, kind, pinned)
	return p, loan{s, h, mem, kind, pinned}, err
}

func lendSlice[T any](ctx context.Context, wait waitMode, s *Shuffler, h Handle, kind borrowKind) ([]T, loan, error) {
	b, mem, err := borrowSlice[T](ctx, wait, s, h, kind, pinned)
	return b, loan{s, h, mem, kind, pinned}, err
}

// call runs fn on what a loan gave, unless the borrow failed, and ends the
// loan even if fn panics. It is the one place the Borrow functions and the
// fills of ReadFrom and CopyFrom run the caller's code on an entry.
func call[P any](p P, l loan, err error, fn func(P) error) (ferr error) {
	if err != nil {
		return err
	}

	defer func() {
		// After Close or Purge, fn may have read zeros where the entry was:
		// its own error (a key that no longer parses, a message that no
		// longer authenticates) would mislead, so ErrClosed wins.
		ferr = endedErr(ferr, l.end())
	}()
	runSecret(func() { ferr = fn(p) })
	return ferr
}

// endedErr is the error of a pinned borrow whose code returned err and
// whose end returned rerr. After Close or Purge, ErrClosed wins over what
// the code made of the zeros it read, but not over its panic: a reader or
// writer that panics with SafePanic purges first, and its panic value would
// be lost, so the two are joined.
func endedErr(err, rerr error) error {
	switch {
	case err == nil:
		return rerr
	case !errors.Is(rerr, ErrClosed):
		return err
	case isPanicked(err):
		return errors.Join(rerr, err)
	}
	return rerr
}

// endPinned ends a pinned borrow of h, whose bytes are mem. When Close or
// Purge ran meanwhile, the shard is closed and its entries are gone, and
// mem is only wiped again, for what the borrower wrote after them; the last
// pinned borrow of a shard Close left mapped unmaps it.
func (s *Shuffler) endPinned(h Handle, mem []byte, kind borrowKind) error {
	// Once the lock is let go: a moving return maps memory, whose refused
	// lock is an event.
	defer s.flushLog()
	return s.endPinnedQuiet(h, mem, kind)
}

// end ends the loan.
func (l loan) end() error {
	if l.pin == pinnedQuiet {
		return l.s.endPinnedQuiet(l.h, l.mem, l.kind)
	}
	return l.s.endPinned(l.h, l.mem, l.kind)
}

// endPinnedQuiet is endPinned with the events it raises left waiting.
func (s *Shuffler) endPinnedQuiet(h Handle, mem []byte, kind borrowKind) error {
	sh := &s.shards[h.shard()]
	sh.mu.Lock()
	// A Return of h made by fn's goroutine, or another, may still be
	// encrypting it; the pin keeps Close from unmapping mem meanwhile.
	for sh.awaitFlight(h.slot()) {
		sh.mu.Lock()
	}
	defer sh.mu.Unlock()
	sh.pins--
	if sh.closed {
		// Unless fn freed its own entry and its arena went back to the
		// system before the close: the address may be unmapped, or
		// another mapping's now.
		if sh.stillMapped(mem) {
			osmem.Wipe(mem)
		}
		if sh.pins == 0 {
			for _, r := range sh.orphans {
				osmem.Wipe(r.Data)
				// A refusal keeps r counted, for the next Close to retry,
				// which counts it released then.
				_ = s.aux.UnmapArena(r)
			}
			sh.orphans = nil
		}
		return ErrClosed
	}
	// fn returned the entry itself and someone freed it since, perhaps
	// with the chunk of the table that held its slot.
	if h.slot() >= sh.Slots.Len() {
		return ErrInvalidHandle
	}
	sl := sh.Slots.At(h.slot())
	if sl.Gen() != h.gen() || sl.State() == store.StateFree {
		return ErrInvalidHandle
	}
	if kind == shared {
		return sh.endView(sl, h)
	}
	return sh.endRent(sl, h)
}

// stillMapped reports whether mem lies in a region of the closed shard
// that is still mapped: an arena Purge left, or one Close left for pinned
// borrows.
func (sh *shard) stillMapped(mem []byte) bool {
	within := func(r []byte) bool {
		if len(mem) == 0 || len(r) == 0 {
			return false
		}
		p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem))), uintptr(unsafe.Pointer(unsafe.SliceData(r)))
		return len(mem) <= len(r) && p >= lo && p-lo <= uintptr(len(r)-len(mem))
	}
	for _, r := range sh.orphans {
		if within(r.Data) {
			return true
		}
	}
	for _, a := range sh.Arenas.List() {
		if a != nil && within(a.Mem) {
			return true
		}
	}
	return false
}

// BorrowContext is Borrow that, instead of failing with ErrBusy, waits for the
// entry as RentContext does, until ctx is done; then it returns ctx's error
// without calling fn, as it returns ErrExpired for an entry whose expiry
// passes meanwhile. As in RentContext, a free entry is taken, and fn
// called, even if ctx is done already.
func BorrowContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, l, err := lend[T](ctx, waitIfBusy, s, h, exclusive)
	return call(p, l, err, fn)
}

// BorrowSliceContext is BorrowSlice that waits like RentContext.
func BorrowSliceContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, l, err := lendSlice[T](ctx, waitIfBusy, s, h, exclusive)
	return call(b, l, err, fn)
}

// BorrowViewContext is BorrowView that waits like ViewContext: behind a rent,
// and behind a writer waiting in RentContext.
func BorrowViewContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, l, err := lend[T](ctx, waitIfBusy, s, h, shared)
	return call(p, l, err, fn)
}

// BorrowViewSliceContext is BorrowViewSlice that waits like ViewContext. It is
// the form for a value read on every request and now and then replaced:
// readers wait out the brief write instead of failing with ErrBusy.
func BorrowViewSliceContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, l, err := lendSlice[T](ctx, waitIfBusy, s, h, shared)
	return call(b, l, err, fn)
}

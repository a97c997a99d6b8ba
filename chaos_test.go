package memshuffle

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// The chaos test turns every feature on at once, where most tests take one
// or two: for each cipher, shuffle-on-return, the background shuffler at
// its fastest, scheduled rotation every millisecond besides RotateKey
// calls, default and explicit deadlines on a test clock that jumps, rent
// tracking, entry sizes from 1 byte to 256 KiB (the large ones in flight),
// typed rents and views, Clone, CopyFrom, ReadAll, Equal, WriteTo and the
// Borrow functions, from 12 goroutines at GOMAXPROCS 8 with a collection
// loop and CPU profiling running. A model of each handle (its value's
// version, its deadline, whether it is freed or expired) judges every
// answer: a value other than the last written, an ErrExpired before the
// deadline or none after it, an untyped error. Every 5 ms the workers
// pause (some holding rents and views) for the invariant checker and an
// exact count of rented and viewed entries; at the end everything must be
// as modelled; then Close, Purge, or both at once race the same load.
//
// MEMSHUFFLE_CHAOS_SEED, _MS (per cipher), _WORKERS, _MODE (ctr, gcm or
// chacha), _ROUNDS and _TTL_MS (the default TTL, else 200 ms to 1 s) run
// it longer or otherwise.

type cxEnt struct {
	h        Handle
	size     int
	seed     uint64
	ver      uint64
	deadline int64 // fake-clock ns, 0 = none
	expired  bool
	freed    bool
	rented   []byte   // held rent across ops
	views    [][]byte // held views across ops
	hist     []string
}

func (e *cxEnt) String() string {
	return fmt.Sprintf("%v size=%d ver=%d deadline=%d expired=%v freed=%v hist=%v", e.h, e.size, e.ver, e.deadline, e.expired, e.freed, e.hist)
}

func (e *cxEnt) note(s string) {
	if len(e.hist) > 12 {
		e.hist = e.hist[1:]
	}
	e.hist = append(e.hist, s)
}

type cxRound struct {
	t      *testing.T
	s      *Shuffler
	clk    *testClock
	mode   string
	quiet  sync.RWMutex
	raw    sync.RWMutex
	ents   [][]*cxEnt
	stop   chan struct{}
	phase2 atomic.Bool
	ending atomic.Bool
	ended  atomic.Bool
	failMu sync.Mutex
	failN  int
	ops    atomic.Int64
	nExp   atomic.Int64
	frozen atomic.Bool
	ttl    time.Duration // the default TTL
}

func (r *cxRound) failf(format string, args ...any) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.failN++
	if r.failN <= 15 {
		r.t.Errorf("[%s] "+format, append([]any{r.mode}, args...)...)
	}
}

var cxSizes = []int{1, 2, 3, 4, 7, 8, 12, 16, 24, 33, 64, 100, 1000, 4096, 16383, 16384, 16400, 20000, 65536, 100000, 262145} // the last just over one piece of the assembly

// judge checks err of an op on e that began at clock t0 and ended at t1;
// allowed are the non-expiry errors the op may answer. It reports whether
// the op succeeded (err == nil) and the model allows it.
func (r *cxRound) judge(e *cxEnt, op string, t0, t1 int64, pre bool, err error, allowed ...error) bool {
	r.ops.Add(1)
	e.note(fmt.Sprintf("%s@%d:%v", op, t0, err))
	if r.phase2.Load() {
		if errors.Is(err, ErrClosed) {
			if !r.ending.Load() {
				r.failf("%s: ErrClosed before Close/Purge", op)
			}
			return false
		}
		if pre {
			r.failf("%s begun after Close/Purge returned: %v, want ErrClosed", op, err)
			return false
		}
	} else if errors.Is(err, ErrClosed) {
		r.failf("%s of %v: ErrClosed with no Close", op, e)
		return false
	}
	if e.freed {
		if !errors.Is(err, ErrInvalidHandle) {
			r.failf("%s of freed %v: %v, want ErrInvalidHandle", op, e, err)
		}
		return false
	}
	if e.expired {
		if !errors.Is(err, ErrExpired) {
			r.failf("%s of expired %v: %v, want ErrExpired", op, e, err)
		}
		return false
	}
	if e.deadline != 0 && e.deadline <= t0 {
		if !errors.Is(err, ErrExpired) {
			r.failf("%s of %v at %d, past deadline by %v: %v, want ErrExpired", op, e, t0, time.Duration(t0-e.deadline), err)
			return false
		}
	}
	if errors.Is(err, ErrExpired) {
		if e.deadline == 0 || e.deadline > t1 {
			r.failf("%s of %v (clock %d..%d): ErrExpired before its deadline", op, e, t0, t1)
			return false
		}
		e.expired = true
		r.nExp.Add(1)
		return false
	}
	if err == nil {
		return true
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return false
		}
	}
	r.failf("%s of %v: unexpected error %v", op, e, err)
	return false
}

// outlived reports whether an entry made at or after clock t0 has reached
// the default TTL by t1. Under -race on a loaded machine a Clone, CopyFrom
// or ReadAll can wait that long for a shard, and the entry it fills then
// expires first, as documented (Clone's copy, io.go).
func (r *cxRound) outlived(t0, t1 int64) bool {
	return r.ttl > 0 && t1-t0 >= int64(r.ttl)
}

func cxBytes[T any](p []T) []byte {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), len(p)*int(unsafe.Sizeof(p[0])))
}

func (r *cxRound) newEnt(w int, rng *mrand.Rand) {
	s := r.s
	size := cxSizes[rng.IntN(len(cxSizes))]
	if size >= 65536 && rng.IntN(3) != 0 {
		size = cxSizes[rng.IntN(12)]
	}
	e := &cxEnt{size: size, seed: rng.Uint64()}
	var err error
	fill := true
	var op string
	t0 := r.clk.now()
	pre := r.ended.Load()
	switch k := rng.IntN(6); {
	case k == 0 || k == 1:
		op = "Alloc[byte]"
		e.h, err = Alloc[byte](s, size)
	case k == 2 && size%8 == 0:
		op = "Alloc[uint64]"
		e.h, err = Alloc[uint64](s, size/8)
	case k == 2 && size%4 == 0:
		op = "Alloc[uint32]"
		e.h, err = Alloc[uint32](s, size/4)
	case k == 3:
		op = "CopyFrom"
		src := make([]byte, size)
		stFill(src, e.seed, 0)
		e.h, err = CopyFrom(s, src)
		fill = false
	case k == 4:
		op = "ReadAll"
		e.h, err = ReadAll(s, &stReader{seed: e.seed, n: size, rng: rng}, 1<<20)
		fill = false
	default:
		// Clone of an own entry.
		if len(r.ents[w]) > 0 {
			src := r.ents[w][rng.IntN(len(r.ents[w]))]
			if src.rented == nil && len(src.views) == 0 {
				op = "Clone"
				h, err := Clone(s, src.h)
				t1 := r.clk.now()
				if errors.Is(err, ErrExpired) && !src.freed && !src.expired && (src.deadline == 0 || src.deadline > t1) && r.outlived(t0, t1) {
					r.ops.Add(1)
					src.note(fmt.Sprintf("Clone@%d:%v", t0, err))
					return // the copy's TTL ran out while it was filled
				}
				if r.judge(src, op, t0, t1, pre, err, ErrOutOfMemory) {
					e.h, e.size, e.seed, e.ver = h, src.size, src.seed, src.ver
					fill = false
					goto made
				}
				return
			}
		}
		op = "Alloc[byte]"
		e.h, err = Alloc[byte](s, size)
	}
	if err != nil {
		if r.phase2.Load() && errors.Is(err, ErrClosed) && r.ending.Load() {
			return
		}
		if errors.Is(err, ErrExpired) && op != "Alloc[byte]" && op != "Alloc[uint64]" && op != "Alloc[uint32]" && r.outlived(t0, r.clk.now()) {
			r.ops.Add(1)
			return // the entry's TTL ran out while it was filled; none is left
		}
		r.failf("%s(%d): %v", op, size, err)
		return
	}
	if pre {
		r.failf("%s after Close returned nil", op)
	}
made:
	e.note(op)
	// Default TTL: read the deadline.
	if d, err := s.Expiry(e.h); err == nil {
		if !d.IsZero() {
			e.deadline = d.UnixNano()
		}
	} else if errors.Is(err, ErrExpired) && r.outlived(t0, r.clk.now()) {
		// The default TTL ran out before the deadline could be read: the
		// handle stays, expired, for a worker to free.
		e.expired = true
		r.nExp.Add(1)
		r.ents[w] = append(r.ents[w], e)
		return
	} else if !(r.phase2.Load() && errors.Is(err, ErrClosed)) {
		r.failf("Expiry of new %v: %v", e, err)
		return
	} else {
		return
	}
	switch rng.IntN(4) {
	case 0: // an explicit, short expiry
		d := r.clk.now() + int64(time.Duration(rng.IntN(30))*time.Millisecond)
		t0 := r.clk.now()
		err := s.SetExpiry(e.h, time.Unix(0, d))
		if r.judge(e, "SetExpiry", t0, r.clk.now(), false, err) {
			e.deadline = d
		}
	case 1: // no expiry
		t0 := r.clk.now()
		err := s.SetExpiry(e.h, time.Time{})
		if r.judge(e, "SetExpiry(0)", t0, r.clk.now(), false, err) {
			e.deadline = 0
		}
	}
	if fill {
		r.raw.RLock()
		t0 := r.clk.now()
		b, err := RentSlice[byte](s, e.h)
		if r.judge(e, "RentSlice(new)", t0, r.clk.now(), false, err) {
			if !allZero(b) && !r.ending.Load() {
				r.failf("%s made a non-zero entry %v", op, e)
			}
			stFill(b, e.seed, 0)
			t0 := r.clk.now()
			err := s.Return(e.h)
			r.judge(e, "Return(new)", t0, r.clk.now(), false, err)
		}
		r.raw.RUnlock()
	}
	r.ents[w] = append(r.ents[w], e)
}

// rentAs rents e as one of the typed forms and returns its bytes.
func (r *cxRound) rentAs(e *cxEnt, how int, view bool) (b []byte, whole bool, op string, err error, wantMismatch bool) {
	s := r.s
	switch how {
	case 0:
		op = "RentSlice[byte]"
		var p []byte
		if view {
			p, err = ViewSlice[byte](s, e.h)
		} else {
			p, err = RentSlice[byte](s, e.h)
		}
		return p, true, op, err, false
	case 1:
		op = "RentSlice[uint64]"
		var p []uint64
		if view {
			p, err = ViewSlice[uint64](s, e.h)
		} else {
			p, err = RentSlice[uint64](s, e.h)
		}
		return cxBytes(p), true, op, err, e.size%8 != 0
	case 2:
		op = "RentSlice[uint32]"
		var p []uint32
		if view {
			p, err = ViewSlice[uint32](s, e.h)
		} else {
			p, err = RentSlice[uint32](s, e.h)
		}
		return cxBytes(p), true, op, err, e.size%4 != 0
	default:
		op = "Rent[uint64]"
		var p *uint64
		if view {
			p, err = View[uint64](s, e.h)
		} else {
			p, err = Rent[uint64](s, e.h)
		}
		if p != nil {
			b = unsafe.Slice((*byte)(unsafe.Pointer(p)), 8)
		}
		return b, false, op, err, e.size < 8 || e.size%8 != 0
	}
}

func (r *cxRound) match(e *cxEnt, b []byte, whole bool) bool {
	if len(b) > 0 {
		al := min(e.size&-e.size, EntryAlign)
		if a := uintptr(unsafe.Pointer(&b[0])); a%uintptr(al) != 0 {
			r.failf("%v rented at %#x, not aligned to %d", e, a, al)
		}
	}
	if whole && len(b) != e.size {
		return false
	}
	return stMatch(b, e.seed, e.ver)
}

func (r *cxRound) op(w int, rng *mrand.Rand) {
	s := r.s
	es := r.ents[w]
	if len(es) < 3 || (len(es) < 10 && rng.IntN(5) == 0) {
		r.newEnt(w, rng)
		return
	}
	k := rng.IntN(len(es))
	e := es[k]
	pre := r.ended.Load()
	drop := func() { r.ents[w] = append(es[:k], es[k+1:]...) }
	// A borrow held across ops ends first, expired or not: the entry
	// stays borrowed until then, whatever its deadline.
	if e.rented != nil {
		// Held rent: check, write, return.
		t0 := r.clk.now()
		bad := !r.phase2.Load() && !r.match(e, e.rented, true)
		stFill(e.rented, e.seed, e.ver+1)
		err := s.Return(e.h)
		e.rented = nil
		if r.judge(e, "Return(held)", t0, r.clk.now(), pre, err) {
			if bad {
				r.failf("held rent of %v showed other bytes than version %d", e, e.ver)
			}
			e.ver++
		}
		r.raw.RUnlock()
		return
	}
	if len(e.views) > 0 {
		v := e.views[len(e.views)-1]
		e.views = e.views[:len(e.views)-1]
		bad := !r.phase2.Load() && !r.match(e, v, true)
		t0 := r.clk.now()
		err := s.ReturnView(e.h)
		if r.judge(e, "ReturnView(held)", t0, r.clk.now(), pre, err) && bad {
			r.failf("held view of %v showed other bytes than version %d", e, e.ver)
		}
		r.raw.RUnlock()
		return
	}
	if e.freed || e.expired {
		// Check the sticky answers, then drop.
		t0 := r.clk.now()
		_, err := RentSlice[byte](s, e.h)
		r.judge(e, "RentSlice(gone)", t0, r.clk.now(), pre, err)
		t0 = r.clk.now()
		_, err = ViewSlice[byte](s, e.h)
		r.judge(e, "ViewSlice(gone)", t0, r.clk.now(), pre, err)
		if e.expired && !e.freed && rng.IntN(2) == 0 {
			err := s.Free(e.h)
			if err != nil && !(r.phase2.Load() && errors.Is(err, ErrClosed)) {
				r.failf("Free of expired %v: %v", e, err)
			}
			e.freed = err == nil
			return
		}
		drop()
		return
	}
	switch op := rng.IntN(12); op {
	case 0, 1, 2: // typed rent, check, write, return
		r.raw.RLock()
		how := rng.IntN(4)
		t0 := r.clk.now()
		b, whole, name, err, mism := r.rentAs(e, how, false)
		var allowed []error
		if mism {
			allowed = []error{ErrTypeMismatch}
		}
		ok := r.judge(e, name, t0, r.clk.now(), pre, err, allowed...)
		if ok && mism {
			r.failf("%s of %v succeeded, want ErrTypeMismatch", name, e)
		}
		if !ok && !mism && errors.Is(err, ErrTypeMismatch) {
			r.failf("%s of %v: ErrTypeMismatch", name, e)
		}
		if ok {
			if !mism && !r.phase2.Load() && !r.match(e, b, whole) && !r.ending.Load() {
				r.failf("%s of %v: other bytes than version %d", name, e, e.ver)
			}
			if whole && len(b) == e.size && !r.phase2.Load() && rng.IntN(3) == 0 {
				// hold the rent across ops (raw stays read-locked)
				e.rented = b
				return
			}
			written := false
			if whole && len(b) == e.size {
				stFill(b, e.seed, e.ver+1)
				written = true
			}
			t0 := r.clk.now()
			err := s.Return(e.h)
			if r.judge(e, "Return", t0, r.clk.now(), pre, err) && written {
				e.ver++
			} else if written && err == nil {
				e.ver++
			}
			t0 = r.clk.now()
			err = s.Return(e.h)
			if !e.expired && !e.freed {
				r.judge(e, "second Return", t0, r.clk.now(), pre, err, ErrNotRented)
				if err == nil {
					r.failf("second Return of %v: nil", e)
				}
			}
		}
		r.raw.RUnlock()
	case 3, 4: // views
		r.raw.RLock()
		how := rng.IntN(4)
		t0 := r.clk.now()
		b, whole, name, err, mism := r.rentAs(e, how, true)
		var allowed []error
		if mism {
			allowed = []error{ErrTypeMismatch}
		}
		ok := r.judge(e, "View "+name, t0, r.clk.now(), pre, err, allowed...)
		if ok && mism {
			r.failf("View %s of %v succeeded, want ErrTypeMismatch", name, e)
		}
		if !ok && !mism && errors.Is(err, ErrTypeMismatch) {
			r.failf("View %s of %v: ErrTypeMismatch", name, e)
		}
		if ok {
			if !mism && !r.phase2.Load() && !r.match(e, b, whole) && !r.ending.Load() {
				r.failf("View %s of %v: other bytes than version %d", name, e, e.ver)
			}
			// A second view.
			t0 := r.clk.now()
			b2, err := ViewSlice[byte](s, e.h)
			ok2 := r.judge(e, "second ViewSlice", t0, r.clk.now(), pre, err)
			if ok2 && !r.phase2.Load() && !r.match(e, b2, true) && !r.ending.Load() {
				r.failf("second ViewSlice of %v: other bytes than version %d", e, e.ver)
			}
			// A rent of a viewed entry is busy.
			t0 = r.clk.now()
			_, err = RentSlice[byte](s, e.h)
			if r.judge(e, "Rent of viewed", t0, r.clk.now(), pre, err, ErrBusy) {
				r.failf("Rent of a viewed entry %v succeeded", e)
			}
			if !e.expired && !r.phase2.Load() && whole && rng.IntN(3) == 0 {
				e.views = append(e.views, b)
				if ok2 {
					t0 = r.clk.now()
					{
						err := s.ReturnView(e.h)
						r.judge(e, "ReturnView", t0, r.clk.now(), pre, err)
					}
				}
				return // raw stays read-locked
			}
			t0 = r.clk.now()
			{
				err := s.ReturnView(e.h)
				r.judge(e, "ReturnView", t0, r.clk.now(), pre, err)
			}
			if ok2 {
				t0 = r.clk.now()
				{
					err := s.ReturnView(e.h)
					r.judge(e, "ReturnView 2", t0, r.clk.now(), pre, err)
				}
			}
		}
		r.raw.RUnlock()
	case 5, 6: // BorrowSlice writes the next version
		t0 := r.clk.now()
		var mismatch bool
		err := BorrowSlice(s, e.h, func(b []byte) error {
			if len(b) != e.size || !stMatch(b, e.seed, e.ver) {
				mismatch = true
			}
			stFill(b, e.seed, e.ver+1)
			return nil
		})
		if r.judge(e, "BorrowSlice", t0, r.clk.now(), pre, err) {
			if mismatch && !r.ending.Load() {
				r.failf("BorrowSlice of %v: other bytes than version %d", e, e.ver)
			}
			e.ver++
		}
	case 7: // Equal
		want := make([]byte, e.size)
		stFill(want, e.seed, e.ver)
		t0 := r.clk.now()
		eq, err := Equal(s, e.h, want)
		if r.judge(e, "Equal", t0, r.clk.now(), pre, err) && !eq && !r.ending.Load() {
			r.failf("Equal of %v with version %d: false", e, e.ver)
		}
	case 8: // Free
		if rng.IntN(2) == 0 {
			t0 := r.clk.now()
			err := s.Free(e.h)
			if e.expired || (e.deadline != 0 && e.deadline <= t0) {
				// Free of an expired handle recycles: nil (or ErrExpired?)
				if err != nil && !(r.phase2.Load() && errors.Is(err, ErrClosed)) {
					r.failf("Free of %v past its deadline: %v", e, err)
				}
				e.freed = err == nil
				return
			}
			if r.judge(e, "Free", t0, r.clk.now(), pre, err) {
				e.freed = true
				// and the handle is dead
				t0 := r.clk.now()
				_, err := Rent[byte](s, e.h)
				r.judge(e, "Rent(freed)", t0, r.clk.now(), pre, err)
				err = s.Free(e.h)
				r.judge(e, "Free(freed)", t0, r.clk.now(), pre, err)
			}
		}
	case 9: // SetExpiry
		t0 := r.clk.now()
		if rng.IntN(2) == 0 {
			d := t0 + int64(time.Duration(rng.IntN(20))*time.Millisecond)
			err := s.SetExpiry(e.h, time.Unix(0, d))
			if r.judge(e, "SetExpiry", t0, r.clk.now(), pre, err) {
				e.deadline = d
			}
		} else {
			err := s.SetExpiry(e.h, time.Time{})
			if r.judge(e, "SetExpiry(0)", t0, r.clk.now(), pre, err) {
				e.deadline = 0
			}
		}
	case 10: // Size and Expiry
		t0 := r.clk.now()
		n, err := s.Size(e.h)
		if r.judge(e, "Size", t0, r.clk.now(), pre, err) && n != e.size {
			r.failf("Size of %v: %d", e, n)
		}
		t0 = r.clk.now()
		d, err := s.Expiry(e.h)
		if r.judge(e, "Expiry", t0, r.clk.now(), pre, err) {
			var got int64
			if !d.IsZero() {
				got = d.UnixNano()
			}
			if got != e.deadline {
				r.failf("Expiry of %v: %d, model %d", e, got, e.deadline)
			}
		}
	case 11: // WriteTo
		var buf bytes.Buffer
		t0 := r.clk.now()
		_, err := WriteTo(s, e.h, &buf)
		if r.judge(e, "WriteTo", t0, r.clk.now(), pre, err) && !r.ending.Load() && !r.match(e, buf.Bytes(), true) {
			r.failf("WriteTo of %v: other bytes than version %d", e, e.ver)
		}
	}
}

// endHeld returns every held rent and view of worker w.
func (r *cxRound) endHeld(w int) {
	for k := 0; k < len(r.ents[w]); k++ {
		e := r.ents[w][k]
		for e.rented != nil || len(e.views) > 0 {
			pre := r.ended.Load()
			if e.rented != nil {
				t0 := r.clk.now()
				bad := !r.match(e, e.rented, true)
				stFill(e.rented, e.seed, e.ver+1)
				err := r.s.Return(e.h)
				e.rented = nil
				if r.judge(e, "Return(end)", t0, r.clk.now(), pre, err) {
					if bad {
						r.failf("held rent of %v showed other bytes than version %d", e, e.ver)
					}
					e.ver++
				}
				r.raw.RUnlock()
			} else {
				v := e.views[len(e.views)-1]
				e.views = e.views[:len(e.views)-1]
				bad := !r.match(e, v, true)
				t0 := r.clk.now()
				err := r.s.ReturnView(e.h)
				if r.judge(e, "ReturnView(end)", t0, r.clk.now(), pre, err) && bad {
					r.failf("held view of %v showed other bytes", e)
				}
				r.raw.RUnlock()
			}
		}
	}
}

func (r *cxRound) worker(w int, rng *mrand.Rand) {
	defer func() {
		if v := recover(); v != nil {
			r.failf("worker %d panicked: %v", w, v)
		}
	}()
	for {
		select {
		case <-r.stop:
			if !r.phase2.Load() {
				r.quiet.RLock()
				r.endHeld(w)
				r.quiet.RUnlock()
			}
			return
		default:
		}
		r.quiet.RLock()
		r.op(w, rng)
		r.quiet.RUnlock()
	}
}

// modelCounts: exact held counts and entry bounds.
func (r *cxRound) modelCounts(now int64) (rented, viewed, lo, hi int) {
	for _, es := range r.ents {
		for _, e := range es {
			// Borrowed until returned, also past its deadline.
			if e.rented != nil {
				rented++
			}
			if len(e.views) > 0 {
				viewed++
			}
			if e.freed || e.expired {
				continue
			}
			hi++
			if e.deadline == 0 || e.deadline > now {
				lo++
			}
		}
	}
	return
}

func (r *cxRound) checker() {
	for {
		select {
		case <-r.stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		r.quiet.Lock()
		if err := r.s.check(); err != nil {
			r.failf("invariant check (paused): %v", err)
		}
		st := r.s.Stats()
		now := r.clk.now()
		rented, viewed, lo, hi := r.modelCounts(now)
		if st.Rented != rented || st.Viewed != viewed {
			r.failf("paused: Stats rented %d viewed %d, model %d and %d", st.Rented, st.Viewed, rented, viewed)
		}
		if st.Entries < lo || st.Entries > hi {
			r.failf("paused: Stats.Entries %d, model %d..%d", st.Entries, lo, hi)
		}
		if lr := st.LongRents; lr > rented+viewed {
			r.failf("paused: LongRents %d > borrowed %d", lr, rented+viewed)
		}
		r.quiet.Unlock()
	}
}

func (r *cxRound) control(rng *mrand.Rand) {
	s := r.s
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		pre := r.ended.Load()
		var err error
		var op string
		switch rng.IntN(5) {
		case 0:
			op, err = "Shuffle", s.Shuffle()
		case 1:
			op, err = "RotateKey(nil)", s.RotateKey(nil, nil)
		case 2:
			var key [32]byte
			var salt [8]byte
			rand.Read(key[:])
			rand.Read(salt[:])
			op, err = "RotateKey", s.RotateKey(&key, &salt)
		case 3:
			_ = s.Stats()
			_ = s.LongRents()
		case 4:
			ctx, cancel := context.WithCancel(context.Background())
			_, e := s.StartBackgroundShuffle(ctx, 0)
			cancel()
			if e != nil && !errors.Is(e, ErrBackgroundRunning) && !errors.Is(e, ErrClosed) {
				r.failf("StartBackgroundShuffle: %v", e)
			}
		}
		if err != nil {
			if errors.Is(err, ErrClosed) && r.ending.Load() {
				continue
			}
			r.failf("%s: %v", op, err)
		} else if pre && op != "" {
			r.failf("%s after Close returned nil", op)
		}
	}
}

func (r *cxRound) clock() {
	for {
		select {
		case <-r.stop:
			return
		case <-time.After(time.Millisecond):
		}
		if !r.frozen.Load() {
			r.clk.advance(time.Millisecond)
			if mrand.IntN(200) == 0 {
				r.clk.advance(25 * time.Millisecond) // a jump: many deadlines at once
			}
		}
	}
}

func cxEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestChaosEveryFeature(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a second per cipher")
	}
	seed := uint64(cxEnv("MEMSHUFFLE_CHAOS_SEED", 1))
	dur := time.Duration(cxEnv("MEMSHUFFLE_CHAOS_MS", 1000)) * time.Millisecond
	workers := cxEnv("MEMSHUFFLE_CHAOS_WORKERS", 12)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	collectInLoop(t, 100*time.Microsecond)
	if err := pprof.StartCPUProfile(io.Discard); err == nil {
		defer pprof.StopCPUProfile()
	}
	for _, m := range []struct {
		name string
		c    Cipher
	}{{"ctr", AES256CTR}, {"gcm", AES256GCM}, {"chacha", ChaCha20Poly1305}} {
		if f := os.Getenv("MEMSHUFFLE_CHAOS_MODE"); f != "" && f != m.name {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			for round := 0; ; round++ {
				rseed := seed*1000 + uint64(round)
				cxRun(t, m.name, m.c, rseed, workers, dur)
				if t.Failed() || round+1 >= cxEnv("MEMSHUFFLE_CHAOS_ROUNDS", 1) {
					return
				}
			}
		})
	}
}

func cxRun(t *testing.T, name string, c Cipher, seed uint64, workers int, dur time.Duration) {
	rng := mrand.New(mrand.NewPCG(seed, 42))
	clk := newTestClock(time.Now())
	ttl := time.Duration(200+rng.IntN(800)) * time.Millisecond
	if ms := cxEnv("MEMSHUFFLE_CHAOS_TTL_MS", 0); ms > 0 {
		ttl = time.Duration(ms) * time.Millisecond
	}
	s, err := New(
		WithCipher(c), WithShards(4), WithArenaSize(4096),
		WithShuffleOnBorrowReturn(true), WithBackgroundShuffle(0),
		WithKeyRotation(time.Millisecond),
		WithDefaultTTL(ttl),
		WithRentTracking(time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)),
		withClock(clk),
	)
	if err != nil {
		t.Fatal(err)
	}
	r := &cxRound{t: t, s: s, clk: clk, ttl: ttl, mode: fmt.Sprintf("%s seed %d", name, seed), stop: make(chan struct{}), ents: make([][]*cxEnt, workers)}
	var wg, bg sync.WaitGroup
	for w := range workers {
		ws := rng.Uint64()
		wg.Go(func() { r.worker(w, mrand.New(mrand.NewPCG(ws, uint64(w)))) })
	}
	cs := rng.Uint64()
	bg.Go(func() { r.control(mrand.New(mrand.NewPCG(cs, 7))) })
	bg.Go(r.checker)
	bg.Go(r.clock)
	time.Sleep(dur)
	close(r.stop)
	wg.Wait()
	bg.Wait()

	// Quiescent: freeze clock; sweep; exact counts.
	now := clk.now()
	if err := s.Shuffle(); err != nil {
		r.failf("final Shuffle: %v", err)
	}
	if err := s.checkNoneDue(now); err != nil {
		r.failf("after Shuffle: %v", err)
	}
	if err := s.check(); err != nil {
		r.failf("final check: %v", err)
	}
	st := s.Stats()
	rented, viewed, lo, _ := r.modelCounts(now)
	if st.Rented != 0 || st.Viewed != 0 || rented != 0 || viewed != 0 {
		r.failf("final: Stats rented %d viewed %d, model %d %d", st.Rented, st.Viewed, rented, viewed)
	}
	if st.Entries != lo {
		r.failf("final: Stats.Entries %d, model %d", st.Entries, lo)
	}
	if st.LongRents != 0 {
		r.failf("final: LongRents %d", st.LongRents)
	}
	if n := len(s.LongRents()); n != 0 {
		r.failf("final: LongRents() has %d", n)
	}
	// Every entry answers per the model.
	for _, es := range r.ents {
		for _, e := range es {
			b, err := ViewSlice[byte](s, e.h)
			if r.judge(e, "final ViewSlice", now, now, false, err) {
				if !r.match(e, b, true) {
					r.failf("final: %v holds other bytes than version %d", e, e.ver)
				}
				if err := s.ReturnView(e.h); err != nil {
					r.failf("final ReturnView: %v", err)
				}
			}
		}
	}
	t.Logf("[%s] ops %d, expiries seen %d, entries %d, stats %+v", r.mode, r.ops.Load(), r.nExp.Load(), st.Entries,
		struct{ Rot, RotFail, Cyc, Exp, Shuf uint64 }{st.KeyRotations, st.KeyRotationsFailed, st.BackgroundCycles, st.Expired, st.Shuffles})

	// Phase 2: Close/Purge racing it all.
	r.phase2.Store(true)
	r.stop = make(chan struct{})
	for w := range workers {
		ws := rng.Uint64()
		wg.Go(func() { r.worker(w, mrand.New(mrand.NewPCG(ws, uint64(w)))) })
	}
	cs = rng.Uint64()
	bg.Go(func() { r.control(mrand.New(mrand.NewPCG(cs, 8))) })
	bg.Go(r.clock)
	time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
	how := rng.IntN(3)
	switch how {
	case 0:
		r.raw.Lock()
		r.ending.Store(true)
		err = s.Close()
		r.raw.Unlock()
	case 1:
		r.ending.Store(true)
		err = s.Purge()
	case 2:
		r.raw.Lock()
		r.ending.Store(true)
		var e1, e2 error
		var w2 sync.WaitGroup
		w2.Go(func() { e1 = s.Purge() })
		w2.Go(func() { e2 = s.Close() })
		w2.Wait()
		r.raw.Unlock()
		err = errors.Join(e1, e2)
	}
	if err != nil {
		r.failf("end %d: %v", how, err)
	}
	r.ended.Store(true)
	time.Sleep(10 * time.Millisecond)
	close(r.stop)
	done := make(chan struct{})
	go func() { wg.Wait(); bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		buf := make([]byte, 1<<22)
		n := runtime.Stack(buf, true)
		t.Fatalf("[%s] workers hang after end %d:\n%s", r.mode, how, buf[:n])
	}
	r.raw.Lock()
	if err := s.Close(); err != nil {
		r.failf("Close after end: %v", err)
	}
	r.raw.Unlock()
	if err := s.check(); err != nil {
		r.failf("check after Close: %v", err)
	}
}

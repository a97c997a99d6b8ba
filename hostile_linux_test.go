// Hostile concurrency: every way to end a Shuffler (Close, Purge, PurgeAll,
// each pair of them at once, and each from inside Borrow callbacks,
// readers and writers) racing rents, views, the io helpers, the adapters,
// Shuffle, RotateKey, the background shuffler and expiry, judged by a
// model. MEMSHUFFLE_HOSTILE_SEED, _ROUNDS, _WORKERS, _PROCS, _MORTAL (1 in
// N new entries gets a short expiry) and _FAULT (1 in N system calls
// refused) tune it; the seed is fixed unless given, so a failure in CI
// fails again.

package memshuffle

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

var hxFaults atomic.Bool

var hxSentinels = []error{ErrInvalidHandle, ErrBusy, ErrNotRented, ErrClosed, ErrUnsupportedType,
	ErrTypeMismatch, ErrInvalidSize, ErrOutOfMemory, ErrLockFailed, ErrNoSecretMemory, ErrExpired,
	ErrTampered, ErrInvalidOption, ErrCounterExhausted, ErrNilArgument, ErrBackgroundRunning,
	ErrNameTaken, ErrInvalidKey, ErrAuthFailed, ErrBufferOverlap, ErrInvalidCount, ErrTooLarge,
	ErrRotationIncomplete, ErrPanicked, ErrUnsupported, io.ErrUnexpectedEOF, io.ErrShortWrite, io.ErrNoProgress}

func hxSentinel(err error) bool {
	for _, s := range hxSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

type hxEnt struct {
	h    Handle
	seed uint64
	ver  uint64
	size int
	hist []string
	dl   time.Time // expiry, if any
	gone bool      // expired, as seen
}

func (e *hxEnt) note(s string) {
	if len(e.hist) > 10 {
		e.hist = e.hist[1:]
	}
	e.hist = append(e.hist, s)
}

type hxRound struct {
	t       *testing.T
	s       *Shuffler
	ending  atomic.Bool
	ended   atomic.Bool
	raw     sync.RWMutex // Rent and View pointers fault after Close: held while used
	quiet   sync.RWMutex // workers hold it for each op; the checker pauses them
	ents    [][]*hxEnt
	shared  []*hxEnt // constant bytes; any worker rents, views
	signers []crypto.Signer
	stop    chan struct{}
	failMu  sync.Mutex
	fails   int
	ops     atomic.Int64
	macKey  Handle
	macRaw  []byte
	aead    *AEAD
	ender   chan func() // a worker's callback may run the end
	inside  atomic.Bool
	endHow  int
}

func (r *hxRound) failf(format string, args ...any) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.fails++
	if r.fails <= 10 {
		r.t.Errorf("[end %d] "+format, append([]any{r.endHow}, args...)...)
	}
}

// ok judges err of op: nil, or a sentinel; ErrClosed only once ending.
func (r *hxRound) ok(op string, err error, allowed ...error) bool {
	r.ops.Add(1)
	if err == nil {
		return true
	}
	if hxFaults.Load() && (errors.Is(err, ErrOutOfMemory) || errors.Is(err, ErrLockFailed) || errors.Is(err, ErrRotationIncomplete)) {
		return false
	}
	if hxFaults.Load() && errors.Is(err, osmem.ErrInjected) && (op == "Shuffle" || op == "Shuffle(inside)" || op == "Shuffle(inside,2)" || op == "end" || op == "Close after end") {
		return false
	}
	if !hxSentinel(err) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		r.failf("%s: non-sentinel error %v (%T)", op, err, err)
		return false
	}
	if errors.Is(err, ErrClosed) {
		if !r.ending.Load() {
			r.failf("%s: ErrClosed before the end", op)
		}
		return false
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return false
		}
	}
	if r.ending.Load() {
		// After Purge or Close, an in-progress call may report other
		// things a wiped entry gives (a zero key, ...).
		if errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrInvalidHandle) || errors.Is(err, ErrExpired) {
			return false
		}
	}
	r.failf("%s: unexpected error %v", op, err)
	return false
}

// okE is ok for an op on e, which may answer ErrExpired past its deadline.
func (r *hxRound) okE(e *hxEnt, op string, t0 time.Time, err error, allowed ...error) bool {
	if errors.Is(err, ErrExpired) {
		r.ops.Add(1)
		if e.dl.IsZero() || t0.Add(-time.Millisecond).Before(e.dl) && time.Now().Before(e.dl) {
			if !r.ending.Load() {
				r.failf("%s of %v: ErrExpired before its deadline (%v left)", op, e.h, time.Until(e.dl))
			}
		}
		e.gone = true
		return false
	}
	return r.ok(op, err, allowed...)
}

var hxSizes = []int{1, 3, 8, 32, 100, 4096, 16384, 20000, 70000}

func (r *hxRound) newEnt(rng *mrand.Rand) *hxEnt {
	e := &hxEnt{seed: rng.Uint64(), size: hxSizes[rng.IntN(len(hxSizes))]}
	var err error
	switch rng.IntN(4) {
	case 0:
		src := make([]byte, e.size)
		stFill(src, e.seed, 0)
		e.h, err = CopyFrom(r.s, src)
		e.note("CopyFrom")
		if !r.ok("CopyFrom", err) {
			return nil
		}
	case 1:
		var rd io.Reader = &stReader{seed: e.seed, n: e.size, rng: rng}
		if rng.IntN(2) == 0 {
			rd = &hxMeddlingReader{r: rd, round: r, rng: rng}
		}
		e.h, err = ReadAll(r.s, rd, 1<<20)
		e.note("ReadAll")
		if !r.ok("ReadAll", err) {
			return nil
		}
	default:
		e.h, err = Alloc[byte](r.s, e.size)
		if !r.ok("Alloc", err) {
			return nil
		}
		e.note("Alloc+fill")
		err = BorrowSlice(r.s, e.h, func(b []byte) error { stFill(b, e.seed, 0); return nil })
		if !r.ok("BorrowSlice(fill)", err) {
			if !errors.Is(err, ErrClosed) {
				r.ok("Free(fill failed)", r.s.Free(e.h))
			}
			return nil
		}
	}
	return e
}

func (r *hxRound) verify(op string, e *hxEnt, b []byte) {
	if r.ending.Load() {
		return
	}
	if len(b) != e.size {
		r.failf("%s of %v: size %d, want %d", op, e.h, len(b), e.size)
		return
	}
	if !stMatch(b, e.seed, e.ver) {
		if r.ending.Load() {
			return // Purge or Close overtook the comparison
		}
		bad := 0
		first := -1
		for i := range b {
			if b[i] != stByte(e.seed, e.ver, i) {
				bad++
				if first < 0 {
					first = i
				}
			}
		}
		zeros := 0
		for _, c := range b {
			if c == 0 {
				zeros++
			}
		}
		r.failf("%s of %v (size %d): bytes differ from version %d: %d bad from %d, %d zeros; prev version matches %v; hist %v; stats %+v", op, e.h, e.size, e.ver, bad, first, zeros, e.ver > 0 && stMatch(b, e.seed, e.ver-1), e.hist, r.s.Stats())
	}
}

// meddle runs a whole-Shuffler call from inside a callback, on another
// goroutine or this one.
func (r *hxRound) meddle(rng *mrand.Rand) {
	s := r.s
	switch rng.IntN(8) {
	case 0:
		r.ok("Shuffle(inside)", s.Shuffle(), ErrOutOfMemory, ErrLockFailed)
	case 1:
		r.ok("RotateKey(inside)", s.RotateKey(nil, nil), ErrOutOfMemory, ErrLockFailed)
	case 2:
		_ = s.Stats()
	case 3:
		s.SetShuffleOnBorrowReturn(rng.IntN(2) == 0)
	case 4:
		stop, err := s.StartBackgroundShuffle(context.Background(), 0)
		if r.ok("StartBackgroundShuffle(inside)", err, ErrBackgroundRunning) {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
			stop()
		}
	case 5:
		h, err := Alloc[byte](s, 1+rng.IntN(100))
		if r.ok("Alloc(inside)", err) {
			r.ok("Free(inside)", s.Free(h))
		}
	case 6:
		runtime.Gosched()
	case 7:
		var wg sync.WaitGroup
		wg.Go(func() { r.ok("Shuffle(inside,2)", s.Shuffle(), ErrOutOfMemory, ErrLockFailed) })
		wg.Go(func() { r.ok("RotateKey(inside,2)", s.RotateKey(nil, nil), ErrOutOfMemory, ErrLockFailed) })
		wg.Wait()
	}
}

func (r *hxRound) maybeEndInside() {
	if r.endHow >= 6 && r.inside.CompareAndSwap(false, true) {
		select {
		case f := <-r.ender:
			f()
		default:
			r.inside.Store(false)
		}
	}
}

func (r *hxRound) op(w int, ents []*hxEnt, rng *mrand.Rand) []*hxEnt {
	s := r.s
	if len(ents) < 3 {
		if e := r.newEnt(rng); e != nil {
			ents = append(ents, e)
		}
		return ents
	}
	k := rng.IntN(len(ents))
	e := ents[k]
	if e.gone {
		err := s.Free(e.h)
		r.ok("Free(expired)", err)
		ents = append(ents[:k], ents[k+1:]...)
		return ents
	}
	if !e.dl.IsZero() {
		// Entries with an expiry only get checked reads.
		t0 := time.Now()
		switch rng.IntN(3) {
		case 0:
			err := BorrowViewSlice(s, e.h, func(b []byte) error { r.verify("BorrowViewSlice(mortal)", e, b); return nil })
			r.okE(e, "BorrowViewSlice(mortal)", t0, err)
		case 1:
			var buf bytes.Buffer
			_, err := WriteTo(s, e.h, &buf)
			if r.okE(e, "WriteTo(mortal)", t0, err) {
				r.verify("WriteTo(mortal)", e, buf.Bytes())
			}
		case 2:
			err := BorrowSlice(s, e.h, func(b []byte) error { r.verify("BorrowSlice(mortal)", e, b); r.meddle(rng); return nil })
			r.okE(e, "BorrowSlice(mortal)", t0, err)
		}
		return ents
	}
	if rng.IntN(hxEnv("MEMSHUFFLE_HOSTILE_MORTAL", 20)) == 0 {
		e2 := r.newEnt(rng)
		if e2 != nil {
			d := time.Now().Add(time.Duration(rng.IntN(20)) * time.Millisecond)
			if r.ok("SetExpiry", s.SetExpiry(e2.h, d)) {
				e2.dl = d
			}
			ents = append(ents, e2)
		}
		return ents
	}
	if rng.IntN(4) == 0 {
		r.sharedOp(w, rng)
		return ents
	}
	opn := rng.IntN(14)
	e.note(fmt.Sprintf("op%d@v%d", opn, e.ver))
	switch opn {
	case 0, 1, 4, 8, 12:
		r.raw.RLock()
		defer r.raw.RUnlock()
	}
	switch opn {
	case 0, 1: // rent, verify, meddle, verify, write, return
		b, err := RentSlice[byte](s, e.h)
		if !r.ok("RentSlice", err) {
			return ents
		}
		r.verify("RentSlice", e, b)
		if rng.IntN(3) == 0 {
			r.meddle(rng)
			r.verify("RentSlice after meddle", e, b)
		} else if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
			r.verify("RentSlice after sleep", e, b)
		}
		if r.ending.Load() {
			r.ok("Return(ending)", s.Return(e.h))
			return ents
		}
		stFill(b, e.seed, e.ver+1)
		if r.ok("Return", s.Return(e.h)) {
			e.ver++
		}
	case 2, 3: // BorrowSlice with meddling inside
		nv := e.ver + 1
		err := BorrowSlice(s, e.h, func(b []byte) error {
			r.verify("BorrowSlice", e, b)
			if rng.IntN(2) == 0 {
				r.meddle(rng)
				r.verify("BorrowSlice after meddle", e, b)
			}
			r.maybeEndInside()
			stFill(b, e.seed, nv)
			return nil
		})
		if r.ok("BorrowSlice", err) {
			e.ver = nv
		} else if !errors.Is(err, ErrClosed) {
			// unknown whether written
		}
	case 4: // views, two at once
		b1, err := ViewSlice[byte](s, e.h)
		if !r.ok("ViewSlice", err) {
			return ents
		}
		b2, err := ViewSlice[byte](s, e.h)
		if r.ok("ViewSlice 2", err) {
			r.verify("ViewSlice 2", e, b2)
			r.ok("ReturnView 2", s.ReturnView(e.h))
		}
		r.verify("ViewSlice", e, b1)
		r.ok("ReturnView", s.ReturnView(e.h))
	case 5:
		err := BorrowViewSlice(s, e.h, func(b []byte) error {
			r.verify("BorrowViewSlice", e, b)
			r.meddle(rng)
			r.verify("BorrowViewSlice after meddle", e, b)
			r.maybeEndInside()
			return nil
		})
		r.ok("BorrowViewSlice", err)
	case 6:
		w := &hxMeddlingWriter{round: r, rng: rng}
		_, err := WriteTo(s, e.h, w)
		if r.ok("WriteTo", err) {
			r.verify("WriteTo", e, w.buf.Bytes())
		}
	case 7:
		want := make([]byte, e.size)
		stFill(want, e.seed, e.ver)
		eq, err := Equal(s, e.h, want)
		if r.ok("Equal", err) && !eq && !r.ending.Load() {
			r.failf("Equal of %v: false", e.h)
		}
	case 8:
		c, err := Clone(s, e.h)
		if r.ok("Clone", err) {
			b, err := ViewSlice[byte](s, c)
			if r.ok("ViewSlice(clone)", err) {
				r.verify("clone", e, b)
				r.ok("ReturnView(clone)", s.ReturnView(c))
			}
			r.ok("Free(clone)", s.Free(c))
		}
	case 9: // free and replace
		if r.ok("Free", s.Free(e.h)) {
			ents = append(ents[:k], ents[k+1:]...)
		}
	case 10:
		mac, err := MAC(s, r.macKey, sha256.New, []byte("msg"), nil)
		if r.ok("MAC", err) && !r.ending.Load() {
			m := hmac.New(sha256.New, r.macRaw)
			m.Write([]byte("msg"))
			if !hmac.Equal(m.Sum(nil), mac) {
				r.failf("MAC differs")
			}
		}
	case 11:
		nonce := make([]byte, 12)
		binary := []byte(fmt.Sprintf("w%d-%d", w, rng.Uint64()))
		ct, err := r.aead.Seal(nil, nonce, binary, nil)
		if r.ok("Seal", err) {
			pt, err := r.aead.Open(nil, nonce, ct, nil)
			if r.ok("Open", err, ErrAuthFailed) && !bytes.Equal(pt, binary) && !r.ending.Load() {
				r.failf("AEAD round trip differs")
			}
		}
	case 12: // hold a rent across others' whole-Shuffler calls
		b, err := RentSlice[byte](s, e.h)
		if !r.ok("RentSlice(hold)", err) {
			return ents
		}
		for range 3 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			r.verify("held rent", e, b)
		}
		r.ok("Return(hold)", s.Return(e.h))
	case 13:
		st := s.Stats()
		if st.Rented < 0 || st.Viewed < 0 || st.Entries < 0 || st.LiveBytes < 0 || st.MappedBytes < 0 || st.LockedBytes < 0 || st.UnlockedBytes < 0 || st.Arenas < 0 {
			r.failf("negative Stats: %+v", st)
		}
		if st.Rented+st.Viewed > st.Entries && !r.ending.Load() {
			r.failf("Stats: %d rented + %d viewed > %d entries", st.Rented, st.Viewed, st.Entries)
		}
	}
	return ents
}

type hxMeddlingReader struct {
	r     io.Reader
	round *hxRound
	rng   *mrand.Rand
}

func (m *hxMeddlingReader) Read(p []byte) (int, error) {
	if m.rng.IntN(8) == 0 {
		m.round.meddle(m.rng)
	}
	if m.rng.IntN(50) == 0 {
		m.round.maybeEndInside()
	}
	return m.r.Read(p)
}

type hxMeddlingWriter struct {
	buf   bytes.Buffer
	round *hxRound
	rng   *mrand.Rand
}

func (m *hxMeddlingWriter) Write(p []byte) (int, error) {
	m.round.meddle(m.rng)
	m.round.maybeEndInside()
	return m.buf.Write(p)
}

func (r *hxRound) sharedOp(w int, rng *mrand.Rand) {
	s := r.s
	e := r.shared[rng.IntN(len(r.shared))]
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(3000))*time.Microsecond)
	defer cancel()
	switch rng.IntN(9) {
	case 0:
		err := BorrowSliceContext(ctx, s, e.h, func(b []byte) error {
			r.verify("BorrowSliceContext(shared)", e, b)
			stFill(b, e.seed, e.ver)
			return nil
		})
		r.ok("BorrowSliceContext(shared)", err, context.DeadlineExceeded)
	case 1:
		err := BorrowViewSliceContext(ctx, s, e.h, func(b []byte) error {
			r.verify("BorrowViewSliceContext(shared)", e, b)
			if rng.IntN(4) == 0 {
				r.meddle(rng)
				r.verify("BorrowViewSliceContext(shared) after meddle", e, b)
			}
			r.maybeEndInside()
			return nil
		})
		r.ok("BorrowViewSliceContext(shared)", err, context.DeadlineExceeded)
	case 2:
		r.raw.RLock()
		b, err := RentSliceContext[byte](ctx, s, e.h)
		if r.ok("RentSliceContext(shared)", err, context.DeadlineExceeded) {
			r.verify("RentSliceContext(shared)", e, b)
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
			r.verify("RentSliceContext(shared) later", e, b)
			r.ok("Return(shared)", s.Return(e.h))
		}
		r.raw.RUnlock()
	case 3:
		r.raw.RLock()
		b, err := ViewSliceContext[byte](ctx, s, e.h)
		if r.ok("ViewSliceContext(shared)", err, context.DeadlineExceeded) {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
			r.verify("ViewSliceContext(shared)", e, b)
			r.ok("ReturnView(shared)", s.ReturnView(e.h))
		}
		r.raw.RUnlock()
	case 4:
		o := r.shared[rng.IntN(len(r.shared))]
		eq, err := EqualEntries(s, e.h, o.h)
		if r.ok("EqualEntries", err, ErrBusy) && !r.ending.Load() && eq != (e.seed == o.seed) {
			r.failf("EqualEntries(%v, %v) = %v", e.h, o.h, eq)
		}
	case 5:
		var buf bytes.Buffer
		_, err := WriteTo(s, e.h, &buf)
		if r.ok("WriteTo(shared)", err, ErrBusy) {
			r.verify("WriteTo(shared)", e, buf.Bytes())
		}
	case 6:
		sg := r.signers[rng.IntN(len(r.signers))]
		var sig []byte
		var err error
		d := sha256.Sum256([]byte("m"))
		switch k := sg.Public().(type) {
		case ed25519.PublicKey:
			sig, err = sg.Sign(nil, []byte("m"), crypto.Hash(0))
			if r.ok("Sign ed25519", err, ErrBusy) && !ed25519.Verify(k, []byte("m"), sig) && !r.ending.Load() {
				r.failf("ed25519 signature does not verify")
			}
		case *ecdsa.PublicKey:
			sig, err = sg.Sign(rand.Reader, d[:], crypto.SHA256)
			if r.ok("Sign ecdsa", err, ErrBusy) && !ecdsa.VerifyASN1(k, d[:], sig) && !r.ending.Load() {
				r.failf("ecdsa signature does not verify")
			}
		case *rsa.PublicKey:
			sig, err = sg.Sign(rand.Reader, d[:], crypto.SHA256)
			if r.ok("Sign rsa", err, ErrBusy) && rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig) != nil && !r.ending.Load() {
				r.failf("rsa signature does not verify")
			}
		}
	case 7:
		// ReadUntil / Random / ReadFrom, and ends from inside a reader
		switch rng.IntN(3) {
		case 0:
			h, err := ReadUntil(s, &stReader{seed: e.seed, n: 1 + rng.IntN(200), rng: rng, delim: true}, 0, 1<<16)
			if r.ok("ReadUntil", err) {
				r.ok("Free(ReadUntil)", s.Free(h))
			}
		case 1:
			h, err := Random(s, 1+rng.IntN(40000))
			if r.ok("Random", err) {
				r.ok("Free(Random)", s.Free(h))
			}
		case 2:
			h, err := ReadFrom(s, fnReader(func(p []byte) {
				r.maybeEndInside()
				for i := range p {
					p[i] = 7
				}
			}), 1+rng.IntN(30000))
			if r.ok("ReadFrom", err) {
				r.ok("Free(ReadFrom)", s.Free(h))
			}
		}
	case 8:
		var key [32]byte
		var salt [8]byte
		rand.Read(key[:])
		rand.Read(salt[:])
		r.ok("RotateKey(key)", s.RotateKey(&key, &salt), ErrOutOfMemory, ErrLockFailed)
	}
}

func (r *hxRound) worker(w int, rng *mrand.Rand) {
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, false)
			r.failf("worker %d panicked: %v\n%s", w, p, buf[:n])
		}
	}()
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		r.quiet.RLock()
		r.ents[w] = r.op(w, r.ents[w], rng)
		r.quiet.RUnlock()
	}
}

func (r *hxRound) control(rng *mrand.Rand) {
	s := r.s
	var stops []func()
	defer func() {
		for _, f := range stops {
			f()
		}
	}()
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
		switch rng.IntN(6) {
		case 0:
			r.ok("Shuffle", s.Shuffle(), ErrOutOfMemory, ErrLockFailed)
		case 1:
			r.ok("RotateKey", s.RotateKey(nil, nil), ErrOutOfMemory, ErrLockFailed)
		case 2:
			ctx, cancel := context.WithCancel(context.Background())
			stop, err := s.StartBackgroundShuffle(ctx, time.Duration(rng.IntN(2))*time.Millisecond)
			if r.ok("StartBackgroundShuffle", err, ErrBackgroundRunning) {
				stops = append(stops, stop)
				if rng.IntN(2) == 0 {
					cancel()
				}
			}
			stops = append(stops, cancel)
		case 3:
			if len(stops) > 0 {
				k := rng.IntN(len(stops))
				stops[k]()
				stops = append(stops[:k], stops[k+1:]...)
			}
		case 4:
			s.SetShuffleOnBorrowReturn(rng.IntN(2) == 0)
		case 5:
			_ = s.LongRents()
		}
	}
}

func (r *hxRound) checker() {
	for {
		select {
		case <-r.stop:
			return
		case <-time.After(3 * time.Millisecond):
		}
		r.quiet.Lock()
		if r.ending.Load() {
			r.quiet.Unlock()
			return
		}
		if err := r.s.check(); err != nil {
			r.failf("check: %v", err)
		}
		st := r.s.Stats()
		n, mortal := 2+len(r.shared)+len(r.signers), 0
		for _, es := range r.ents {
			for _, e := range es {
				if !e.dl.IsZero() || e.gone {
					mortal++
				} else {
					n++
				}
			}
		}
		if !r.ending.Load() && (st.Entries < n || st.Entries > n+mortal || st.Rented != 0 || st.Viewed != 0) {
			r.failf("paused: Stats entries %d rented %d viewed %d; model %d..%d entries", st.Entries, st.Rented, st.Viewed, n, n+mortal)
		}
		r.quiet.Unlock()
	}
}

var hxDERs = sync.OnceValue(func() [][]byte {
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	eck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	var out [][]byte
	for _, k := range []any{edk, eck, rk} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		out = append(out, der)
	}
	return out
})

func hxEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestHostileEnds(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(hxEnv("MEMSHUFFLE_HOSTILE_PROCS", 8)))
	collectInLoop(t, 100*time.Microsecond)
	if err := pprof.StartCPUProfile(io.Discard); err == nil {
		defer pprof.StopCPUProfile()
	}
	seed := uint64(hxEnv("MEMSHUFFLE_HOSTILE_SEED", 1))
	rounds := hxEnv("MEMSHUFFLE_HOSTILE_ROUNDS", 20)
	if testing.Short() && os.Getenv("MEMSHUFFLE_HOSTILE_ROUNDS") == "" {
		rounds = 5
	}
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 3))
	before := runtime.NumGoroutine()
	for round := range rounds {
		if t.Failed() {
			break
		}
		hxRun(t, rng, round)
	}
	stressGoroutinesBack(t, before)
}

func hxRun(t *testing.T, rng *mrand.Rand, round int) {
	ciphers := []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305}
	opts := []Option{WithCipher(ciphers[rng.IntN(3)]), WithShards(1 << rng.IntN(4)), WithArenaSize(4096 << rng.IntN(3))}
	if rng.IntN(2) == 0 {
		opts = append(opts, WithKeyRotation(time.Duration(1+rng.IntN(3))*time.Millisecond))
	}
	if rng.IntN(2) == 0 {
		opts = append(opts, WithBackgroundShuffle(0))
	}
	if rng.IntN(2) == 0 {
		opts = append(opts, WithRentTracking(time.Millisecond))
	}
	if rng.IntN(2) == 0 {
		opts = append(opts, WithShuffleOnBorrowReturn(true))
	}
	if rng.IntN(4) == 0 {
		// Secret memory counts against RLIMIT_MEMLOCK, and a refusal of it
		// is an error, which only MEMSHUFFLE_HOSTILE_FAULT tolerates.
		if lim := osmem.BindingLockLimit(); lim >= 0 && lim < 8<<20 {
			t.Logf("round %d: no secret memory under RLIMIT_MEMLOCK %d", round, lim)
		} else {
			opts = append(opts, WithSecretMemory())
		}
	}
	if hxEnv("MEMSHUFFLE_HOSTILE_FAULT", 0) > 0 && rng.IntN(2) == 0 {
		opts = append(opts, WithLockMode(LockStrict))
	}
	s, err := New(opts...)
	if errors.Is(err, ErrNoSecretMemory) {
		s, err = New(opts[:len(opts)-1]...)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &hxRound{t: t, s: s, stop: make(chan struct{}), ender: make(chan func(), 1), endHow: rng.IntN(10)}
	r.macRaw = []byte("0123456789abcdef0123456789abcdef")
	r.macKey, err = CopyFrom(s, bytes.Clone(r.macRaw))
	if err != nil {
		t.Fatal(err)
	}
	ak, err := CopyFrom(s, []byte("fedcba9876543210fedcba9876543210"))
	if err != nil {
		t.Fatal(err)
	}
	if r.aead, err = NewAEAD(s, ak); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		e := &hxEnt{seed: rng.Uint64() % 3, size: 256}
		src := make([]byte, e.size)
		stFill(src, e.seed, 0)
		if e.h, err = CopyFrom(s, src); err != nil {
			t.Fatal(err)
		}
		r.shared = append(r.shared, e)
	}
	for _, der := range hxDERs() {
		h, err := CopyFrom(s, bytes.Clone(der))
		if err != nil {
			t.Fatal(err)
		}
		sg, err := NewSigner(s, h)
		if err != nil {
			t.Fatal(err)
		}
		r.signers = append(r.signers, sg)
	}
	if n := hxEnv("MEMSHUFFLE_HOSTILE_FAULT", 0); n > 0 {
		hxFaults.Store(true)
		frng := mrand.New(mrand.NewPCG(rng.Uint64(), 5))
		var fmu sync.Mutex
		osmem.SetFault(func(o osmem.Op) error {
			if o == osmem.OpAdvise {
				return nil
			}
			fmu.Lock()
			defer fmu.Unlock()
			if frng.IntN(n) == 0 {
				return osmem.ErrInjected
			}
			return nil
		})
		defer osmem.SetFault(nil)
		defer hxFaults.Store(false)
	}
	var wg, bg sync.WaitGroup
	workers := hxEnv("MEMSHUFFLE_HOSTILE_WORKERS", 6)
	r.ents = make([][]*hxEnt, workers)
	bg.Go(r.checker)
	for w := range workers {
		ws := rng.Uint64()
		wg.Go(func() { r.worker(w, mrand.New(mrand.NewPCG(ws, uint64(w)))) })
	}
	cs := rng.Uint64()
	bg.Go(func() { r.control(mrand.New(mrand.NewPCG(cs, 9))) })
	time.Sleep(time.Duration(10+rng.IntN(60)) * time.Millisecond)

	end := func() error {
		if h := r.endHow % 6; h == 0 || h >= 3 {
			r.raw.Lock()
			defer r.raw.Unlock()
		}
		r.ending.Store(true)
		switch r.endHow % 6 {
		case 0:
			return s.Close()
		case 1:
			return s.Purge()
		case 2:
			return PurgeAll()
		case 3:
			var a, b error
			var w2 sync.WaitGroup
			w2.Go(func() { a = s.Close() })
			w2.Go(func() { b = s.Purge() })
			w2.Wait()
			return errors.Join(a, b)
		case 4:
			var a, b error
			var w2 sync.WaitGroup
			w2.Go(func() { a = PurgeAll() })
			w2.Go(func() { b = s.Close() })
			w2.Wait()
			return errors.Join(a, b)
		default:
			var a, b error
			var w2 sync.WaitGroup
			w2.Go(func() { a = s.Close() })
			w2.Go(func() { b = s.Close() })
			w2.Wait()
			return errors.Join(a, b)
		}
	}
	var endErr error
	endDone := make(chan struct{})
	if r.endHow >= 6 {
		// Ended from inside a worker's Borrow callback.
		r.ender <- func() { endErr = end(); close(endDone) }
		select {
		case <-endDone:
		case <-time.After(200 * time.Millisecond):
			select {
			case f := <-r.ender:
				f()
			default:
				<-endDone
			}
		}
	} else {
		endErr = end()
		close(endDone)
	}
	r.ok("end", endErr)
	r.ended.Store(true)
	time.Sleep(5 * time.Millisecond)
	close(r.stop)
	done := make(chan struct{})
	go func() { wg.Wait(); bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<22)
		n := runtime.Stack(buf, true)
		t.Fatalf("round %d: hang after end %d:\n%s", round, r.endHow, buf[:n])
	}
	osmem.SetFault(nil)
	r.ok("Close after end", s.Close())
	if err := s.Close(); err != nil {
		r.failf("second Close after end: %v", err)
	}
	if err := s.check(); err != nil {
		r.failf("check after Close: %v", err)
	}
	if st := s.Stats(); st.Entries != 0 || st.MappedBytes != 0 || st.Rented != 0 || st.Viewed != 0 || st.LockedBytes != 0 || st.UnlockedBytes != 0 {
		r.failf("Stats after Close: %+v", st)
	}
}

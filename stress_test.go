package memshuffle

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestStress hammers every public operation of a Shuffler from many
// goroutines at once, on entries each goroutine owns and on entries they
// share, while the collector runs without pause, the CPU profiler sends
// its signals, GOMAXPROCS is above the core count, and the Shuffler
// shuffles, rotates its key, expires entries and is finally closed or
// purged under their feet. It checks that no call panics, that every call
// answers nil or one of the sentinel errors its contract allows, that every
// value read back is the one last written, that after Close or Purge every
// call answers ErrClosed, that the invariant checker passes whenever the
// workers are paused, and that no goroutine outlives the Shuffler.
//
// The model of each entry is a seed and a version, from which its bytes
// are generated: the test keeps no copy of the plaintext on the side.
//
// MEMSHUFFLE_STRESS (a Go duration) sets how long each mode runs, for a
// long hunt; MEMSHUFFLE_STRESS_MODE keeps only the modes whose names
// contain it.
func TestStress(t *testing.T) {
	per := stressDuration()
	modes := []struct {
		name string
		opts []Option
	}{
		{"ctr", nil},
		{"gcm", []Option{WithCipher(AES256GCM)}},
		{"chacha", []Option{WithCipher(ChaCha20Poly1305)}},
		{"secret", []Option{WithSecretMemory()}},
		{"secret-gcm", []Option{WithSecretMemory(), WithCipher(AES256GCM)}},
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	collectInLoop(t, 100*time.Microsecond)
	// More signals: SIGPROF lands anywhere, in the cipher too. It fails
	// when go test -cpuprofile runs one already, which does as well.
	if err := pprof.StartCPUProfile(io.Discard); err == nil {
		defer pprof.StopCPUProfile()
	}
	eck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(eck)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for _, m := range modes {
		if f := os.Getenv("MEMSHUFFLE_STRESS_MODE"); f != "" && !strings.Contains(m.name, f) {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			probe, err := New(m.opts...)
			if errors.Is(err, ErrNoSecretMemory) || errors.Is(err, ErrLockFailed) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			probe.Close()
			var total stressCounts
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
			end := time.Now().Add(per)
			rounds := 0
			for time.Now().Before(end) && !t.Failed() {
				r := newStressRound(t, rng, m.opts, ecDER)
				r.run(rng)
				total.add(&r.counts)
				rounds++
			}
			t.Logf("%d rounds in %v: %s", rounds, per, total.String())
		})
	}
	stressGoroutinesBack(t, before)
}

// stressDuration is how long TestStress runs each mode.
func stressDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("MEMSHUFFLE_STRESS")); err == nil && d > 0 {
		return d
	}
	if raceBuild {
		return 300 * time.Millisecond
	}
	return shortOr(1200*time.Millisecond, 300*time.Millisecond)
}

// stressGoroutinesBack waits for the number of goroutines to come back to
// what it was before the Shufflers were made, and fails with their stacks
// if it does not.
func stressGoroutinesBack(t *testing.T, before int) {
	t.Helper()
	for range 300 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Errorf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:n])
}

// stWord, stByte and stFill generate the bytes of version ver of the entry
// of seed seed; no byte is 0, so ReadUntil can use 0 as its delimiter.
func stWord(seed, ver uint64, j int) uint64 {
	x := seed ^ (ver+1)*0x9e3779b97f4a7c15 ^ uint64(j)*0xd6e8feb86659fd93
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func stByte(seed, ver uint64, i int) byte {
	b := byte(stWord(seed, ver, i/8) >> (8 * (i % 8)))
	if b == 0 {
		b = 0xa5
	}
	return b
}

func stFill(b []byte, seed, ver uint64) {
	for i := range b {
		b[i] = stByte(seed, ver, i)
	}
}

func stMatch(b []byte, seed, ver uint64) bool {
	for i := range b {
		if b[i] != stByte(seed, ver, i) {
			return false
		}
	}
	return true
}

// stReader yields the bytes of (seed, ver), n of them, in reads of random
// length, then, with delim, a 0 and bytes that must not be read.
type stReader struct {
	seed, ver uint64
	n, off    int
	delim     bool
	rng       *mrand.Rand
}

func (r *stReader) Read(p []byte) (int, error) {
	total := r.n
	if r.delim {
		total += 9
	}
	if r.off >= total {
		return 0, io.EOF
	}
	k := min(len(p), 1+r.rng.IntN(97), total-r.off)
	for i := range k {
		switch j := r.off + i; {
		case j < r.n:
			p[i] = stByte(r.seed, r.ver, j)
		case j == r.n:
			p[i] = 0
		default:
			p[i] = 0xee
		}
	}
	r.off += k
	if r.off == total && r.rng.IntN(2) == 0 {
		return k, io.EOF
	}
	return k, nil
}

// stWriter checks what WriteTo hands it against (seed, ver).
type stWriter struct {
	seed, ver uint64
	n         int
	bad       bool
}

func (w *stWriter) Write(p []byte) (int, error) {
	for i, c := range p {
		if c != stByte(w.seed, w.ver, w.n+i) {
			w.bad = true
		}
	}
	w.n += len(p)
	runtime.Gosched()
	return len(p), nil
}

var errStressMismatch = errors.New("stress: entry holds other bytes than its model")

// stPriv is an entry one worker owns; nobody else touches it.
type stPriv struct {
	h         Handle
	seed, ver uint64
	size      int
	expiring  bool // SetExpiry gave it a deadline: any call may answer ErrExpired
	expired   bool // one did: every later one must
	made      string
	ops       []int // the last calls made on it, for a report
}

// stShared is an entry every worker rents, views and writes. Its version
// changes only under an exclusive rent, so a viewer reads a version that
// cannot change while it views.
type stShared struct {
	h    Handle
	seed uint64
	size int
	ver  atomic.Uint64
}

func (p *stPriv) String() string {
	return fmt.Sprintf("%d bytes, made by %s, last calls %v, expiring %v", p.size, p.made, p.ops, p.expiring)
}

// stressCounts counts calls by outcome.
type stressCounts struct {
	ok, busy, closed, expired, timeout, other atomic.Int64
}

func (c *stressCounts) add(o *stressCounts) {
	c.ok.Add(o.ok.Load())
	c.busy.Add(o.busy.Load())
	c.closed.Add(o.closed.Load())
	c.expired.Add(o.expired.Load())
	c.timeout.Add(o.timeout.Load())
	c.other.Add(o.other.Load())
}

func (c *stressCounts) String() string {
	return fmt.Sprintf("calls: %d nil, %d ErrBusy, %d ErrClosed, %d ErrExpired, %d timed out, %d other expected errors",
		c.ok.Load(), c.busy.Load(), c.closed.Load(), c.expired.Load(), c.timeout.Load(), c.other.Load())
}

// stressRound is one Shuffler's life: made, hammered, ended.
type stressRound struct {
	t      *testing.T
	s      *Shuffler
	desc   string // the options added to the mode's
	secret bool   // secret memory or LockStrict: a refused lock is an error
	ttl    bool   // WithDefaultTTL: every entry has an expiry, far off
	purger *stressPurger

	shared  []*stShared
	macKey  *stShared
	aeadKey *stShared
	edKey   Handle
	edDER   []byte // for ReadPrivateKey after Close
	ecKey   Handle
	edPub   ed25519.PublicKey
	ecPub   *ecdsa.PublicKey
	signEd  crypto.Signer
	signEC  crypto.Signer
	aead    *AEAD
	foreign Handle // a Handle of another, closed, Shuffler

	// quiet is held for reading by every worker call and for writing by
	// the invariant check, so the check sees no call in progress.
	quiet sync.RWMutex
	// raw is held for reading while a slice from Rent or View is in use,
	// and for writing around Close, which unmaps what such a slice points
	// into. Borrow functions and the calls that pin need no such care.
	raw sync.RWMutex

	ending atomic.Bool // Close or Purge has been called
	ended  atomic.Bool // and has returned
	stop   chan struct{}

	privs [][]*stPriv // each worker's, read by the check while paused

	counts  stressCounts
	failMu  sync.Mutex
	failN   int
	workers int
}

func newStressRound(t *testing.T, rng *mrand.Rand, mode []Option, ecDER []byte) *stressRound {
	t.Helper()
	opts := append([]Option(nil), mode...)
	var desc []string
	add := func(what string, o ...Option) {
		opts = append(opts, o...)
		desc = append(desc, what)
	}
	secret := false
	for _, o := range mode {
		var c config
		if o.apply(&c) == nil && c.secret {
			secret = true
		}
	}
	if rng.IntN(3) == 0 {
		n := 1 << rng.IntN(3)
		add(fmt.Sprintf("WithShards(%d)", n), WithShards(n))
	}
	if rng.IntN(3) == 0 {
		add("WithArenaSize(4096)", WithArenaSize(4096))
	}
	// MEMSHUFFLE_STRESS_FORCE=rotation makes every round rotate on a
	// schedule, to hunt what only shows there.
	if rng.IntN(3) == 0 || strings.Contains(os.Getenv("MEMSHUFFLE_STRESS_FORCE"), "rotation") {
		d := time.Duration(1+rng.IntN(3)) * time.Millisecond
		add(fmt.Sprintf("WithKeyRotation(%v)", d), WithKeyRotation(d))
	}
	if rng.IntN(3) == 0 {
		d := time.Duration(rng.IntN(2)) * time.Millisecond
		add(fmt.Sprintf("WithBackgroundShuffle(%v)", d), WithBackgroundShuffle(d))
	}
	if rng.IntN(3) == 0 {
		add("WithShuffleOnBorrowReturn(true)", WithShuffleOnBorrowReturn(true))
	}
	if rng.IntN(4) == 0 {
		add("WithRentTracking(1ms)", WithRentTracking(time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)))
	}
	modeSecret, strictAt := secret, -1
	switch rng.IntN(6) {
	case 0:
		add("WithLockMode(LockNone)", WithLockMode(LockNone))
	case 1:
		strictAt = len(opts)
		add("WithLockMode(LockStrict)", WithLockMode(LockStrict))
		secret = true // refuses as secret memory does
	}
	ttl := rng.IntN(5) == 0
	if ttl {
		add("WithDefaultTTL(1h)", WithDefaultTTL(time.Hour))
	}
	// A logger that purges the Shuffler from an event once asked to, as
	// WithLogger allows; key rotations raise events often.
	purger := &stressPurger{}
	purging := rng.IntN(4) == 0
	if purging {
		d := time.Duration(1+rng.IntN(3)) * time.Millisecond
		add(fmt.Sprintf("WithLogger(purging), WithKeyRotation(%v)", d), WithLogger(slog.New(purger)), WithKeyRotation(d))
	}
	s, err := New(opts...)
	if errors.Is(err, ErrLockFailed) && strictAt >= 0 {
		// The memory-lock limit holds no arena: LockStrict refuses New
		// itself, which the mode's probe, without it, did not.
		t.Logf("round without LockStrict: %v", err)
		opts, secret = append(opts[:strictAt:strictAt], opts[strictAt+1:]...), modeSecret
		for i, d := range desc {
			if d == "WithLockMode(LockStrict)" {
				desc = append(desc[:i:i], desc[i+1:]...)
				break
			}
		}
		s, err = New(opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	if purging {
		purger.s = s
	}
	r := &stressRound{t: t, s: s, desc: strings.Join(desc, ", "), secret: secret, ttl: ttl, purger: purger, stop: make(chan struct{}), workers: 12}
	mk := func(size int) *stShared {
		e := &stShared{seed: rng.Uint64(), size: size}
		b := make([]byte, size)
		stFill(b, e.seed, 0)
		if e.h, err = CopyFrom(s, b); err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, n := range []int{1, 16, 33, 64, 256, 1019, 4096} {
		r.shared = append(r.shared, mk(n))
	}
	r.macKey, r.aeadKey = mk(32), mk(32)
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	edk := ed25519.NewKeyFromSeed(seed)
	r.edPub = edk.Public().(ed25519.PublicKey)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edk)
	r.edDER = bytes.Clone(edDER)
	if r.edKey, err = CopyFrom(s, edDER); err != nil {
		t.Fatal(err)
	}
	if r.ecKey, err = CopyFrom(s, bytes.Clone(ecDER)); err != nil {
		t.Fatal(err)
	}
	if r.signEd, err = NewSigner(s, r.edKey); err != nil {
		t.Fatal(err)
	}
	if r.signEC, err = NewSigner(s, r.ecKey); err != nil {
		t.Fatal(err)
	}
	r.ecPub = r.signEC.Public().(*ecdsa.PublicKey)
	if r.aead, err = NewAEAD(s, r.aeadKey.h); err != nil {
		t.Fatal(err)
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r.foreign, _ = Create[uint64](other)
	other.Close()
	r.privs = make([][]*stPriv, r.workers)
	return r
}

// failf records a defect; the first few are reported.
func (r *stressRound) failf(format string, args ...any) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.failN++
	if r.failN <= 20 {
		r.t.Errorf("[%s] "+format, append([]any{r.desc}, args...)...)
	}
}

// want checks the error of one call, begun when closedBefore said whether
// Close or Purge had returned: nil, or an error matching one of allowed,
// or ErrClosed once Close or Purge was called, which every call begun after
// it returned must answer. It reports whether the call succeeded.
func (r *stressRound) want(op string, closedBefore bool, err error, allowed ...error) bool {
	if err == nil {
		if closedBefore {
			r.failf("%s after Close returned nil, want ErrClosed", op)
			return false
		}
		r.counts.ok.Add(1)
		return true
	}
	if errors.Is(err, ErrClosed) {
		if !r.ending.Load() {
			r.failf("%s: %v before any Close or Purge", op, err)
		}
		r.counts.closed.Add(1)
		return false
	}
	if closedBefore {
		r.failf("%s after Close: %v, want ErrClosed", op, err)
		return false
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			switch a {
			case ErrBusy:
				r.counts.busy.Add(1)
			case ErrExpired:
				r.counts.expired.Add(1)
			case context.DeadlineExceeded:
				r.counts.timeout.Add(1)
			default:
				r.counts.other.Add(1)
			}
			return false
		}
	}
	r.failf("%s: unexpected error %v", op, err)
	return false
}

// memErrs are what a call that needs memory may answer with secret memory,
// which the kernel counts against RLIMIT_MEMLOCK whatever the lock mode,
// or with LockStrict.
func (r *stressRound) memErrs() []error {
	if r.secret {
		return []error{ErrLockFailed, ErrOutOfMemory}
	}
	return nil
}

func (r *stressRound) run(rng *mrand.Rand) {
	var wg sync.WaitGroup
	for w := range r.workers {
		seed := rng.Uint64()
		wg.Go(func() { r.worker(w, mrand.New(mrand.NewPCG(seed, uint64(w)))) })
	}
	ctlSeed := rng.Uint64()
	var bg sync.WaitGroup
	bg.Go(func() { r.control(mrand.New(mrand.NewPCG(ctlSeed, 99))) })
	bg.Go(r.checker)
	time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
	r.end(rng.IntN(7))
	// Calls begun now must all answer ErrClosed; give them a moment.
	time.Sleep(5 * time.Millisecond)
	close(r.stop)
	wg.Wait()
	bg.Wait()
	r.raw.Lock()
	if err := r.s.Close(); err != nil {
		r.failf("Close after the end: %v", err)
	}
	r.raw.Unlock()
	if err := r.s.check(); err != nil {
		r.failf("check after Close: %v", err)
	}
	r.afterClose()
	r.noGoroutines()
}

// end closes or purges the Shuffler while the workers run, in one of
// several ways.
func (r *stressRound) end(how int) {
	s := r.s
	closeRaw := func() error {
		r.raw.Lock()
		defer r.raw.Unlock()
		r.ending.Store(true)
		return s.Close()
	}
	var err error
	switch how {
	case 0:
		err = closeRaw()
	case 1:
		r.ending.Store(true)
		err = s.Purge()
	case 2: // two Closes at once
		var wg sync.WaitGroup
		var e1, e2 error
		r.raw.Lock()
		r.ending.Store(true)
		wg.Go(func() { e1 = s.Close() })
		wg.Go(func() { e2 = s.Close() })
		wg.Wait()
		r.raw.Unlock()
		err = errors.Join(e1, e2)
	case 3: // Close from inside a Borrow function
		sh := r.shared[0]
		// Before the borrow: the check must not count the ender's rent.
		r.ending.Store(true)
		r.raw.Lock()
		var inner error
		berr := BorrowSliceContext(context.Background(), s, sh.h, func(b []byte) error {
			r.ending.Store(true)
			inner = s.Close()
			return nil
		})
		r.raw.Unlock()
		if !errors.Is(berr, ErrClosed) {
			r.failf("BorrowSliceContext closed from inside: %v, want ErrClosed", berr)
		}
		r.ending.Store(true)
		err = inner
	case 4: // Purge from inside a view
		sh := r.shared[1]
		r.ending.Store(true)
		var inner error
		berr := BorrowViewSliceContext(context.Background(), s, sh.h, func(b []byte) error {
			r.ending.Store(true)
			inner = s.Purge()
			return nil
		})
		if !errors.Is(berr, ErrClosed) {
			r.failf("BorrowViewSliceContext purged from inside: %v, want ErrClosed", berr)
		}
		r.ending.Store(true)
		err = inner
	case 5: // Purge and Close at once
		r.raw.Lock()
		r.ending.Store(true)
		var wg sync.WaitGroup
		var e1, e2 error
		wg.Go(func() { e1 = s.Purge() })
		wg.Go(func() { e2 = s.Close() })
		wg.Wait()
		r.raw.Unlock()
		err = errors.Join(e1, e2)
	case 6: // Purge from the logger, if it is one that purges
		r.ending.Store(true)
		r.purger.arm.Store(true)
		for wait := time.Now().Add(50 * time.Millisecond); r.purger.s != nil && time.Now().Before(wait) && !r.purger.done.Load(); {
			time.Sleep(time.Millisecond)
		}
		if !r.purger.done.Load() {
			err = s.Purge()
		}
	}
	if err != nil {
		r.failf("end %d: %v", how, err)
	}
	r.ended.Store(true)
}

// checker runs the invariant check with every worker paused, and checks
// the gauges against the model.
func (r *stressRound) checker() {
	// Paused for at most a tenth of the time: the check reads every
	// arena, which under the race detector takes a while.
	pause := time.Duration(0)
	for {
		select {
		case <-r.stop:
			return
		case <-time.After(max(3*time.Millisecond, 9*pause)):
		}
		t0 := time.Now()
		r.quiet.Lock()
		if r.ending.Load() {
			r.quiet.Unlock()
			continue
		}
		if err := r.s.check(); err != nil {
			r.failf("invariant check: %v", err)
		}
		st := r.s.Stats()
		if !r.ending.Load() {
			if st.Rented != 0 || st.Viewed != 0 {
				r.failf("paused, yet Stats has %d rented and %d viewed", st.Rented, st.Viewed)
			}
			lo, hi := len(r.shared)+4, len(r.shared)+4
			for _, ps := range r.privs {
				for _, p := range ps {
					if !p.expiring {
						lo++
					}
					hi++
				}
			}
			if st.Entries < lo || st.Entries > hi {
				r.failf("Stats.Entries %d, the model has %d to %d", st.Entries, lo, hi)
			}
		}
		r.quiet.Unlock()
		pause = time.Since(t0)
	}
}

// control runs the calls on the whole Shuffler.
func (r *stressRound) control(rng *mrand.Rand) {
	s := r.s
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
		pre := r.ended.Load()
		switch rng.IntN(7) {
		case 0:
			r.want("Shuffle", pre, s.Shuffle(), r.memErrs()...)
		case 1:
			r.want("RotateKey(nil, nil)", pre, s.RotateKey(nil, nil), r.memErrs()...)
		case 2:
			var key [32]byte
			var salt [8]byte
			rand.Read(key[:])
			rand.Read(salt[:])
			r.want("RotateKey", pre, s.RotateKey(&key, &salt), r.memErrs()...)
			if key != [32]byte{} || salt != [8]byte{} {
				r.failf("RotateKey left the caller's key or salt")
			}
		case 3:
			ctx, cancel := context.WithCancel(context.Background())
			stop, err := s.StartBackgroundShuffle(ctx, time.Duration(rng.IntN(2))*time.Millisecond)
			if r.want("StartBackgroundShuffle", pre, err, ErrBackgroundRunning) {
				stops = append(stops, stop)
				if rng.IntN(2) == 0 {
					cancel() // it stops on its own
				}
			}
			stops = append(stops, cancel)
		case 4:
			if len(stops) > 0 {
				k := rng.IntN(len(stops))
				stops[k]()
				stops = append(stops[:k], stops[k+1:]...)
			}
		case 5:
			s.SetShuffleOnBorrowReturn(rng.IntN(2) == 0)
		case 6:
			st := s.Stats()
			_ = st.Sub(s.Stats())
			_ = s.LongRents()
		}
	}
}

// worker runs random calls until the round stops.
func (r *stressRound) worker(w int, rng *mrand.Rand) {
	defer func() {
		if v := recover(); v != nil {
			r.failf("worker %d panicked: %v", w, v)
		}
	}()
	for {
		select {
		case <-r.stop:
			r.quiet.Lock()
			r.privs[w] = nil
			r.quiet.Unlock()
			return
		default:
		}
		r.quiet.RLock()
		if rng.IntN(2) == 0 {
			r.privateOp(w, rng)
		} else {
			r.sharedOp(rng)
		}
		r.quiet.RUnlock()
	}
}

var stressSizes = []int{1, 7, 8, 16, 24, 32, 33, 48, 100, 256, 1019, 4096, 20000}

// newPriv makes an entry for worker w in one of the ways there are.
func (r *stressRound) newPriv(w int, rng *mrand.Rand) {
	s := r.s
	pre := r.ended.Load()
	p := &stPriv{seed: rng.Uint64(), size: stressSizes[rng.IntN(len(stressSizes))]}
	if rng.IntN(200) == 0 {
		p.size = 70000 // more than an arena
	}
	var h Handle
	var err error
	var op string
	fill := false
	switch rng.IntN(8) {
	case 0:
		op = "Alloc[byte]"
		h, err = Alloc[byte](s, p.size)
		fill = true
	case 1:
		op = "Alloc[uint64]"
		p.size = (p.size + 7) &^ 7
		h, err = Alloc[uint64](s, p.size/8)
		fill = true
	case 2:
		op = "Create[[3]uint64]"
		p.size = 24
		h, err = Create[[3]uint64](s)
		fill = true
	case 3:
		op = "CopyFrom"
		src := make([]byte, p.size)
		stFill(src, p.seed, 0)
		h, err = CopyFrom(s, src)
		if err == nil && !allZero(src) {
			r.failf("CopyFrom left its source")
		}
		if err != nil && !stMatch(src, p.seed, 0) {
			r.failf("CopyFrom failed (%v) and changed its source", err)
		}
	case 4:
		op = "ReadFrom"
		h, err = ReadFrom(s, &stReader{seed: p.seed, n: p.size, rng: rng}, p.size)
	case 5:
		op = "ReadAll"
		h, err = ReadAll(s, &stReader{seed: p.seed, n: p.size, rng: rng}, 1<<20)
	case 6:
		op = "ReadUntil"
		h, err = ReadUntil(s, &stReader{seed: p.seed, n: p.size, delim: true, rng: rng}, 0, 1<<20)
	case 7:
		op = "Random"
		h, err = Random(s, p.size)
		if err == nil {
			n, err := s.Size(h)
			if r.want("Size of Random", pre, err) && n != p.size {
				r.failf("Random made %d bytes, want %d", n, p.size)
			}
			r.want("Free of Random", pre, s.Free(h))
		}
		r.want(op, pre, err, r.memErrs()...)
		return
	}
	if !r.want(op, pre, err, r.memErrs()...) {
		return
	}
	if n, err := s.Size(h); r.want("Size", pre, err) && n != p.size {
		r.failf("%s made %d bytes, want %d", op, n, p.size)
	}
	p.h = h
	p.made = op
	if !fill {
		// What it was made with, read back at once, before any other
		// call of this worker could change it.
		pre := r.ended.Load()
		err := BorrowViewSlice(s, h, func(b []byte) error {
			if !stMatch(b, p.seed, 0) {
				return errStressMismatch
			}
			return nil
		})
		if !r.want(op+" then BorrowViewSlice", pre, err, errStressMismatch) && errors.Is(err, errStressMismatch) {
			r.failf("%s returned nil and %v, which holds other bytes than it was given (%s)", op, h, p)
		}
	}
	if fill {
		pre := r.ended.Load()
		err := BorrowSlice(s, h, func(b []byte) error {
			if !allZero(b) {
				return errStressMismatch
			}
			stFill(b, p.seed, 0)
			return nil
		})
		if !r.want(op+" then BorrowSlice", pre, err) {
			if errors.Is(err, errStressMismatch) {
				r.failf("%s made an entry that is not zero", op)
			}
			r.want("Free", pre, s.Free(h))
			return
		}
	}
	r.privs[w] = append(r.privs[w], p)
}

// privateOp runs one call on an entry worker w owns, whose contents are
// known exactly.
func (r *stressRound) privateOp(w int, rng *mrand.Rand) {
	s := r.s
	if len(r.privs[w]) < 2 || (len(r.privs[w]) < 8 && rng.IntN(6) == 0) {
		r.newPriv(w, rng)
		return
	}
	k := rng.IntN(len(r.privs[w]))
	p := r.privs[w][k]
	forget := func() {
		r.privs[w] = append(r.privs[w][:k], r.privs[w][k+1:]...)
	}
	pre := r.ended.Load()
	// want for p: an expiring entry may answer ErrExpired, and once it
	// has, must answer it on every later call.
	held := false // inside an open rent of p, which may answer ErrBusy
	wantP := func(op string, err error, allowed ...error) bool {
		if held && errors.Is(err, ErrBusy) {
			return r.want(op, pre, err, ErrBusy)
		}
		if p.expired && err == nil && !pre {
			r.failf("%s of an expired entry succeeded", op)
			return false
		}
		if p.expired && !pre && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrClosed) {
			r.failf("%s of an expired entry: %v, want ErrExpired", op, err)
			return false
		}
		if p.expiring {
			allowed = append(allowed, ErrExpired)
		}
		ok := r.want(op, pre, err, allowed...)
		if errors.Is(err, ErrExpired) && p.expiring {
			p.expired = true
		}
		return ok
	}
	op := rng.IntN(16)
	p.ops = append(p.ops[max(0, len(p.ops)-7):], op)
	switch op {
	case 0, 1: // Rent, check, write the next version, Return
		r.raw.RLock()
		var b []byte
		var err error
		if p.size%8 == 0 && rng.IntN(2) == 0 {
			var u []uint64
			u, err = RentSlice[uint64](s, p.h)
			if err == nil {
				b = unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), len(u)*8)
			}
		} else {
			b, err = RentSlice[byte](s, p.h)
		}
		if wantP("RentSlice", err) {
			bad := !stMatch(b, p.seed, p.ver)
			stFill(b, p.seed, p.ver+1)
			if rng.IntN(4) == 0 {
				held = true
				_, err := View[byte](s, p.h)
				wantP("View of a rented entry", err, ErrBusy)
				if err == nil {
					r.failf("View of a rented entry succeeded")
				}
				err = s.Free(p.h)
				wantP("Free of a rented entry", err, ErrBusy)
				if err == nil {
					r.failf("Free of a rented entry succeeded")
				}
				held = false
			}
			runtime.Gosched()
			err := s.Return(p.h)
			if wantP("Return", err) {
				if bad {
					r.failf("RentSlice of %v: other bytes than version %d (%s)", p.h, p.ver, p)
				}
				p.ver++
				wantP("second Return", s.Return(p.h), ErrNotRented)
			} else if errors.Is(err, ErrExpired) {
				// It expired while rented and was wiped at Return.
				p.expired = true
			}
		}
		r.raw.RUnlock()
	case 2: // two views, checked, ended; a third ReturnView
		r.raw.RLock()
		v1, err := ViewSlice[byte](s, p.h)
		if wantP("ViewSlice", err) {
			v2, err := ViewSlice[byte](s, p.h)
			ok2 := wantP("second ViewSlice", err)
			bad := !stMatch(v1, p.seed, p.ver) || ok2 && !stMatch(v2, p.seed, p.ver)
			runtime.Gosched()
			okr := wantP("ReturnView", s.ReturnView(p.h))
			if ok2 {
				okr = wantP("second ReturnView", s.ReturnView(p.h)) && okr
			}
			if okr && bad {
				r.failf("ViewSlice of %v: other bytes than version %d (%s)", p.h, p.ver, p)
			}
			if okr {
				wantP("ReturnView of an entry not viewed", s.ReturnView(p.h), ErrNotRented)
			}
		}
		r.raw.RUnlock()
	case 3: // BorrowSlice writes the next version
		err := BorrowSlice(s, p.h, func(b []byte) error {
			if !stMatch(b, p.seed, p.ver) {
				return errStressMismatch
			}
			stFill(b, p.seed, p.ver+1)
			return nil
		})
		if wantP("BorrowSlice", err) {
			p.ver++
		} else if errors.Is(err, errStressMismatch) {
			r.failf("BorrowSlice of %v: other bytes than version %d (%s)", p.h, p.ver, p)
		}
	case 4: // Borrow of a fixed-size array, BorrowView and their contexts
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		var err error
		if p.size >= 8 {
			check := func(a *[8]byte) error {
				if !stMatch(a[:], p.seed, p.ver) {
					return errStressMismatch
				}
				return nil
			}
			switch rng.IntN(4) {
			case 0:
				err = Borrow(s, p.h, check)
			case 1:
				err = BorrowView(s, p.h, check)
			case 2:
				err = BorrowContext(ctx, s, p.h, check)
			case 3:
				err = BorrowViewContext(ctx, s, p.h, check)
			}
		} else {
			err = BorrowViewSliceContext(ctx, s, p.h, func(b []byte) error {
				if !stMatch(b, p.seed, p.ver) {
					return errStressMismatch
				}
				return nil
			})
		}
		cancel()
		if !wantP("Borrow", err) && errors.Is(err, errStressMismatch) {
			r.failf("Borrow of %v: other bytes than version %d (%s)", p.h, p.ver, p)
		}
	case 5: // Clone, compared with its source
		c, err := Clone(s, p.h)
		if wantP("Clone", err, r.memErrs()...) {
			q := &stPriv{h: c, seed: p.seed, ver: p.ver, size: p.size, made: "Clone"}
			eq, err := EqualEntries(s, p.h, c)
			if wantP("EqualEntries", err) && !eq {
				r.failf("EqualEntries of an entry and its clone: false")
			}
			r.privs[w] = append(r.privs[w], q)
		}
	case 6: // Equal, against the model and against a changed copy
		want := make([]byte, p.size)
		stFill(want, p.seed, p.ver)
		eq, err := Equal(s, p.h, want)
		if wantP("Equal", err) && !eq {
			r.failf("Equal of %v and version %d: false", p.h, p.ver)
		}
		want[rng.IntN(len(want))] ^= 1
		eq, err = Equal(s, p.h, want)
		if wantP("Equal", err) && eq {
			r.failf("Equal of %v and a changed copy: true", p.h)
		}
		eq, err = Equal(s, p.h, want[:len(want)-1])
		if err == nil && eq {
			r.failf("Equal of %v and a shorter slice: true", p.h)
		}
	case 7: // WriteTo
		cw := &stWriter{seed: p.seed, ver: p.ver}
		n, err := WriteTo(s, p.h, cw)
		if wantP("WriteTo", err) && (cw.bad || n != int64(p.size) || cw.n != p.size) {
			r.failf("WriteTo of %v: %d bytes, bad %v, want %d of version %d", p.h, n, cw.bad, p.size, p.ver)
		}
	case 8: // Free, then the handle is dead for good
		err := s.Free(p.h)
		if p.expired && errors.Is(err, ErrExpired) {
			err = nil
		}
		if p.expiring {
			if errors.Is(err, ErrExpired) {
				err = nil
			}
		}
		if r.want("Free", pre, err) || errors.Is(err, ErrClosed) {
			forget()
			if err == nil {
				pre := r.ended.Load()
				r.want("Free of a freed handle", pre, s.Free(p.h), ErrInvalidHandle)
				_, err := RentSlice[byte](s, p.h)
				if err == nil {
					r.failf("RentSlice of a freed handle succeeded")
					s.Return(p.h)
				}
				r.want("RentSlice of a freed handle", pre, err, ErrInvalidHandle)
				if s.Valid(p.h) {
					r.failf("Valid of a freed handle")
				}
			}
		}
	case 9: // an expiry, soon or past
		d := time.Duration(rng.IntN(3000)-500) * time.Microsecond
		if p.expiring {
			return
		}
		err := s.SetExpiry(p.h, time.Now().Add(d))
		if r.want("SetExpiry", pre, err) {
			p.expiring = true
			if d < 0 {
				if s.Valid(p.h) {
					r.failf("Valid of an entry past its expiry")
				}
			}
		}
	case 10: // Expiry, Size, Valid
		tm, err := s.Expiry(p.h)
		if wantP("Expiry", err) && tm.IsZero() == (p.expiring || r.ttl) {
			r.failf("Expiry %v, yet SetExpiry was called: %v", tm, p.expiring)
		}
		n, err := s.Size(p.h)
		if wantP("Size", err) && n != p.size {
			r.failf("Size %d, want %d", n, p.size)
		}
		if v := s.Valid(p.h); v && (p.expired || pre) || !v && !p.expiring && !r.ending.Load() {
			r.failf("Valid %v: expired %v, closed %v", v, p.expired, pre)
		}
	case 11: // calls that must fail
		if _, err := RentSlice[[3]byte](s, p.h); p.size%3 != 0 {
			wantP("RentSlice of a size that does not divide", err, ErrTypeMismatch)
			if err == nil {
				r.failf("RentSlice[[3]byte] of %d bytes succeeded", p.size)
				s.Return(p.h)
			}
		} else if err == nil {
			s.Return(p.h)
		}
		if _, err := Rent[[70001]byte](s, p.h); err == nil {
			r.failf("Rent of a type larger than the entry succeeded")
			s.Return(p.h)
		} else {
			wantP("Rent of a larger type", err, ErrTypeMismatch)
		}
		// Bad arguments may be reported ahead of ErrClosed.
		_, err := RentSlice[byte](s, Handle{})
		r.want("RentSlice of the zero Handle", pre, err, ErrInvalidHandle)
		_, err = ViewSlice[byte](s, r.foreign)
		r.want("ViewSlice of another Shuffler's Handle", pre, err, ErrInvalidHandle)
		r.want("Free of another Shuffler's Handle", pre, s.Free(r.foreign), ErrInvalidHandle)
		_, err = Alloc[byte](s, 0)
		r.want("Alloc of 0", false, err, ErrInvalidSize)
		_, err = Alloc[*int](s, 1)
		r.want("Alloc of pointers", false, err, ErrUnsupportedType)
		r.want("BorrowSlice with nil", false, BorrowSlice[byte](s, p.h, nil), ErrNilArgument)
		wantP("Return of an entry not rented", s.Return(p.h), ErrNotRented)
		_, err = ReadAll(s, nil, 10)
		r.want("ReadAll of nil", false, err, ErrNilArgument)
		_, err = ReadAll(s, &stReader{seed: p.seed, n: 100, rng: rng}, 50)
		r.want("ReadAll over its limit", pre, err, append(r.memErrs(), ErrTooLarge)...)
	case 12: // a view that blocks a rent, from another call
		r.raw.RLock()
		v, err := View[byte](s, p.h)
		if wantP("View", err) {
			bad := *v != stByte(p.seed, p.ver, 0)
			_, err := RentSlice[byte](s, p.h)
			if err == nil {
				r.failf("RentSlice of a viewed entry succeeded")
			}
			wantP("RentSlice of a viewed entry", err, ErrBusy)
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, err = RentSliceContext[byte](ctx, s, p.h)
			cancel()
			if err == nil {
				r.failf("RentSliceContext of a viewed entry succeeded")
			}
			wantP("RentSliceContext of a viewed entry", err, context.DeadlineExceeded)
			if wantP("ReturnView", s.ReturnView(p.h)) && bad {
				r.failf("View of %v: other bytes than version %d (%s)", p.h, p.ver, p)
			}
		}
		r.raw.RUnlock()
	case 13: // MAC of a private key, against crypto/hmac
		mac, err := MAC(s, p.h, sha256.New, []byte("message"), nil)
		if wantP("MAC", err) {
			key := make([]byte, p.size)
			stFill(key, p.seed, p.ver)
			m := hmac.New(sha256.New, key)
			m.Write([]byte("message"))
			if !hmac.Equal(mac, m.Sum(nil)) {
				r.failf("MAC under %v differs from crypto/hmac's", p.h)
			}
		}
	case 14: // rent through a typed pointer of the whole entry
		if p.size != 24 {
			return
		}
		r.raw.RLock()
		a, err := Rent[[3]uint64](s, p.h)
		if wantP("Rent[[3]uint64]", err) {
			b := unsafe.Slice((*byte)(unsafe.Pointer(a)), 24)
			bad := !stMatch(b, p.seed, p.ver)
			stFill(b, p.seed, p.ver+1)
			if wantP("Return", s.Return(p.h)) {
				if bad {
					r.failf("Rent[[3]uint64] of %v: other bytes than version %d (%s)", p.h, p.ver, p)
				}
				p.ver++
			}
		}
		r.raw.RUnlock()
	case 15: // RentContext and ViewContext of a free entry
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		r.raw.RLock()
		defer r.raw.RUnlock()
		if rng.IntN(2) == 0 {
			b, err := RentSliceContext[byte](ctx, s, p.h)
			if wantP("RentSliceContext", err) {
				bad := !stMatch(b, p.seed, p.ver)
				stFill(b, p.seed, p.ver+1)
				if wantP("Return", s.Return(p.h)) {
					if bad {
						r.failf("RentSliceContext of %v: other bytes than version %d (%s)", p.h, p.ver, p)
					}
					p.ver++
				}
			}
		} else {
			b, err := ViewSliceContext[byte](ctx, s, p.h)
			if wantP("ViewSliceContext", err) {
				bad := !stMatch(b, p.seed, p.ver)
				if wantP("ReturnView", s.ReturnView(p.h)) && bad {
					r.failf("ViewSliceContext of %v: other bytes than version %d (%s)", p.h, p.ver, p)
				}
			}
		}
	}
	if p.expired {
		// Done with it: Free recycles the slot of an expired entry.
		for i, q := range r.privs[w] {
			if q == p {
				pre := r.ended.Load()
				err := s.Free(p.h)
				if errors.Is(err, ErrExpired) {
					err = nil
				}
				if r.want("Free of an expired entry", pre, err) || errors.Is(err, ErrClosed) {
					r.privs[w] = append(r.privs[w][:i], r.privs[w][i+1:]...)
				}
				break
			}
		}
	}
}

// sharedOp runs one call on the entries every worker uses.
func (r *stressRound) sharedOp(rng *mrand.Rand) {
	s := r.s
	pre := r.ended.Load()
	e := r.shared[rng.IntN(len(r.shared))]
	busy := []error{ErrBusy}
	switch rng.IntN(12) {
	case 0: // Rent, check, write the next version, Return
		r.raw.RLock()
		b, err := RentSlice[byte](s, e.h)
		if r.want("shared RentSlice", pre, err, busy...) {
			v := e.ver.Load()
			bad := !stMatch(b, e.seed, v)
			stFill(b, e.seed, v+1)
			e.ver.Store(v + 1)
			runtime.Gosched()
			if r.want("shared Return", pre, s.Return(e.h)) && bad {
				r.failf("shared RentSlice of %v: other bytes than version %d", e.h, v)
			}
		}
		r.raw.RUnlock()
	case 1: // RentContext waits out the others
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		r.raw.RLock()
		b, err := RentSliceContext[byte](ctx, s, e.h)
		cancel()
		if r.want("shared RentSliceContext", pre, err, context.DeadlineExceeded) {
			v := e.ver.Load()
			bad := !stMatch(b, e.seed, v)
			stFill(b, e.seed, v+1)
			e.ver.Store(v + 1)
			if r.want("shared Return", pre, s.Return(e.h)) && bad {
				r.failf("shared RentSliceContext of %v: other bytes than version %d", e.h, v)
			}
		}
		r.raw.RUnlock()
	case 2: // View or ViewContext
		r.raw.RLock()
		var b []byte
		var err error
		if rng.IntN(2) == 0 {
			b, err = ViewSlice[byte](s, e.h)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			b, err = ViewSliceContext[byte](ctx, s, e.h)
			cancel()
		}
		if r.want("shared ViewSlice", pre, err, ErrBusy, context.DeadlineExceeded) {
			v := e.ver.Load()
			bad := !stMatch(b, e.seed, v)
			runtime.Gosched()
			if r.want("shared ReturnView", pre, s.ReturnView(e.h)) && bad {
				r.failf("shared ViewSlice of %v: other bytes than version %d", e.h, v)
			}
		}
		r.raw.RUnlock()
	case 3: // BorrowSlice and BorrowSliceContext write
		write := func(b []byte) error {
			v := e.ver.Load()
			if !stMatch(b, e.seed, v) {
				return errStressMismatch
			}
			stFill(b, e.seed, v+1)
			e.ver.Store(v + 1)
			return nil
		}
		var err error
		if rng.IntN(2) == 0 {
			err = BorrowSlice(s, e.h, write)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			err = BorrowSliceContext(ctx, s, e.h, write)
			cancel()
		}
		if !r.want("shared BorrowSlice", pre, err, ErrBusy, context.DeadlineExceeded) && errors.Is(err, errStressMismatch) {
			r.failf("shared BorrowSlice of %v: other bytes than its version", e.h)
		}
	case 4: // BorrowViewSlice reads, and within it Equal and Clone
		var clone Handle
		var cloned uint64
		read := func(b []byte) error {
			v := e.ver.Load()
			if !stMatch(b, e.seed, v) {
				return errStressMismatch
			}
			want := make([]byte, e.size)
			stFill(want, e.seed, v)
			eq, err := Equal(s, e.h, want)
			if r.want("Equal inside a view", pre, err, ErrBusy) && !eq {
				return errStressMismatch
			}
			if rng.IntN(4) == 0 {
				c, err := Clone(s, e.h)
				if r.want("Clone inside a view", pre, err, append(r.memErrs(), ErrBusy)...) {
					clone, cloned = c, v
				}
			}
			return nil
		}
		var err error
		if rng.IntN(2) == 0 {
			err = BorrowViewSlice(s, e.h, read)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			err = BorrowViewSliceContext(ctx, s, e.h, read)
			cancel()
		}
		if !r.want("shared BorrowViewSlice", pre, err, ErrBusy, context.DeadlineExceeded) && errors.Is(err, errStressMismatch) {
			r.failf("shared BorrowViewSlice of %v: other bytes than its version", e.h)
		}
		if !clone.IsZero() {
			pre := r.ended.Load()
			err := BorrowViewSlice(s, clone, func(b []byte) error {
				if !stMatch(b, e.seed, cloned) {
					return errStressMismatch
				}
				return nil
			})
			if !r.want("BorrowViewSlice of a clone", pre, err) && errors.Is(err, errStressMismatch) {
				r.failf("clone of %v: other bytes than version %d", e.h, cloned)
			}
			r.want("Free of a clone", pre, s.Free(clone))
		}
	case 5: // WriteTo, under a view
		var bad bool
		var n int64
		err := BorrowViewSlice(s, e.h, func(b []byte) error {
			cw := &stWriter{seed: e.seed, ver: e.ver.Load()}
			var err error
			n, err = WriteTo(s, e.h, cw)
			bad = cw.bad || cw.n != e.size
			return err
		})
		if r.want("shared WriteTo", pre, err, ErrBusy) && (bad || n != int64(e.size)) {
			r.failf("shared WriteTo of %v: %d bytes, wrong %v", e.h, n, bad)
		}
	case 6: // MAC against crypto/hmac
		mac, err := MAC(s, r.macKey.h, sha256.New, []byte("message"), nil)
		if r.want("MAC", pre, err, ErrBusy) {
			key := make([]byte, 32)
			stFill(key, r.macKey.seed, 0)
			m := hmac.New(sha256.New, key)
			m.Write([]byte("message"))
			if !hmac.Equal(mac, m.Sum(nil)) {
				r.failf("MAC differs from crypto/hmac's")
			}
		}
	case 7: // AEAD against crypto/cipher's GCM, and a forgery
		nonce := make([]byte, 12)
		rand.Read(nonce)
		msg := []byte("attack at dawn, or a little later")
		ct, err := r.aead.Seal(nil, nonce, msg, []byte("ad"))
		if r.want("AEAD Seal", pre, err, ErrBusy) {
			key := make([]byte, 32)
			stFill(key, r.aeadKey.seed, 0)
			blk, _ := aes.NewCipher(key)
			g, _ := cipher.NewGCM(blk)
			if want := g.Seal(nil, nonce, msg, []byte("ad")); !bytes.Equal(ct, want) {
				r.failf("AEAD Seal differs from crypto/cipher's")
			}
			pre := r.ended.Load()
			pt, err := r.aead.Open(nil, nonce, ct, []byte("ad"))
			if r.want("AEAD Open", pre, err, ErrBusy) && !bytes.Equal(pt, msg) {
				r.failf("AEAD Open gave other bytes")
			}
			ct[rng.IntN(len(ct))] ^= 0x10
			_, err = r.aead.Open(nil, nonce, ct, []byte("ad"))
			if err == nil {
				r.failf("AEAD Open of a forgery succeeded")
			}
			r.want("AEAD Open of a forgery", pre, err, ErrAuthFailed, ErrBusy)
		}
	case 8: // Ed25519 and ECDSA signatures, verified
		msg := []byte("to be signed")
		sig, err := r.signEd.Sign(nil, msg, crypto.Hash(0))
		if r.want("Sign Ed25519", pre, err, ErrBusy) && !ed25519.Verify(r.edPub, msg, sig) {
			r.failf("Ed25519 signature does not verify")
		}
		d := sha256.Sum256(msg)
		pre = r.ended.Load()
		sig, err = r.signEC.Sign(rand.Reader, d[:], crypto.SHA256)
		if r.want("Sign ECDSA", pre, err, ErrBusy) && !ecdsa.VerifyASN1(r.ecPub, d[:], sig) {
			r.failf("ECDSA signature does not verify")
		}
	case 9: // Size, Valid, Expiry
		n, err := s.Size(e.h)
		if r.want("shared Size", pre, err) && n != e.size {
			r.failf("shared Size %d, want %d", n, e.size)
		}
		if v := s.Valid(e.h); v && pre || !v && !r.ending.Load() {
			r.failf("shared Valid %v, closed %v", v, pre)
		}
		tm, err := s.Expiry(e.h)
		if r.want("shared Expiry", pre, err) && tm.IsZero() == r.ttl {
			r.failf("shared Expiry %v", tm)
		}
	case 10: // NewSigner and NewAEAD anew
		_, err := NewSigner(s, r.edKey)
		r.want("NewSigner", pre, err, ErrBusy)
		_, err = NewAEAD(s, r.aeadKey.h)
		r.want("NewAEAD", pre, err, ErrBusy)
	case 11: // EqualEntries of two shared entries
		f := r.shared[rng.IntN(len(r.shared))]
		eq, err := EqualEntries(s, e.h, f.h)
		if r.want("shared EqualEntries", pre, err, ErrBusy) && eq != (e == f) {
			r.failf("EqualEntries of %v and %v: %v", e.h, f.h, eq)
		}
	}
}

// afterClose calls every operation once on the closed Shuffler, with the
// Handles it issued: each must answer ErrClosed, and fail safe.
func (r *stressRound) afterClose() {
	s := r.s
	h := r.shared[2].h
	closed := func(op string, err error) {
		if !errors.Is(err, ErrClosed) {
			r.failf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
	_, err := Alloc[byte](s, 8)
	closed("Alloc", err)
	_, err = Create[uint64](s)
	closed("Create", err)
	src := []byte("not wiped on failure")
	_, err = CopyFrom(s, src)
	closed("CopyFrom", err)
	if string(src) != "not wiped on failure" {
		r.failf("CopyFrom after Close changed its source")
	}
	_, err = ReadFrom(s, strings.NewReader("abc"), 3)
	closed("ReadFrom", err)
	_, err = ReadAll(s, strings.NewReader("abc"), 3)
	closed("ReadAll", err)
	_, err = ReadUntil(s, strings.NewReader("abc\n"), '\n', 3)
	closed("ReadUntil", err)
	_, err = Random(s, 8)
	closed("Random", err)
	_, err = Clone(s, h)
	closed("Clone", err)
	_, err = Equal(s, h, make([]byte, r.shared[2].size))
	closed("Equal", err)
	_, err = EqualEntries(s, h, r.shared[3].h)
	closed("EqualEntries", err)
	_, err = WriteTo(s, h, io.Discard)
	closed("WriteTo", err)
	_, err = Rent[byte](s, h)
	closed("Rent", err)
	_, err = RentSlice[byte](s, h)
	closed("RentSlice", err)
	_, err = View[byte](s, h)
	closed("View", err)
	_, err = ViewSlice[byte](s, h)
	closed("ViewSlice", err)
	ctx := context.Background()
	_, err = RentContext[byte](ctx, s, h)
	closed("RentContext", err)
	_, err = ViewSliceContext[byte](ctx, s, h)
	closed("ViewSliceContext", err)
	called := false
	fn := func([]byte) error { called = true; return nil }
	closed("BorrowSlice", BorrowSlice(s, h, fn))
	closed("BorrowViewSlice", BorrowViewSlice(s, h, fn))
	closed("BorrowSliceContext", BorrowSliceContext(ctx, s, h, fn))
	closed("BorrowViewSliceContext", BorrowViewSliceContext(ctx, s, h, fn))
	if called {
		r.failf("a Borrow function ran after Close")
	}
	closed("Return", s.Return(h))
	closed("ReturnView", s.ReturnView(h))
	closed("Free", s.Free(h))
	closed("Free of the zero Handle", s.Free(Handle{}))
	closed("Free of another Shuffler's Handle", s.Free(r.foreign))
	closed("SetExpiry", s.SetExpiry(h, time.Now()))
	_, err = s.Expiry(h)
	closed("Expiry", err)
	_, err = s.Size(h)
	closed("Size", err)
	if s.Valid(h) {
		r.failf("Valid after Close")
	}
	closed("Shuffle", s.Shuffle())
	var key [32]byte
	var salt [8]byte
	key[0], salt[0] = 1, 1
	closed("RotateKey", s.RotateKey(&key, &salt))
	if key != [32]byte{} || salt != [8]byte{} {
		r.failf("RotateKey after Close left the caller's key or salt")
	}
	stop, err := s.StartBackgroundShuffle(ctx, 0)
	closed("StartBackgroundShuffle", err)
	if stop != nil {
		stop()
	}
	_, err = MAC(s, r.macKey.h, sha256.New, nil, nil)
	closed("MAC", err)
	_, err = NewAEAD(s, r.aeadKey.h)
	closed("NewAEAD", err)
	_, err = r.aead.Seal(nil, make([]byte, 12), []byte("x"), nil)
	closed("AEAD Seal", err)
	_, err = r.aead.Open(nil, make([]byte, 12), make([]byte, 17), nil)
	closed("AEAD Open", err)
	_, err = NewSigner(s, r.edKey)
	closed("NewSigner", err)
	_, err = r.signEd.Sign(nil, []byte("m"), crypto.Hash(0))
	closed("Sign", err)
	d := sha256.Sum256(nil)
	_, err = r.signEC.Sign(rand.Reader, d[:], crypto.SHA256)
	closed("Sign ECDSA", err)
	_, err = ReadPrivateKey(s, bytes.NewReader(r.edDER))
	closed("ReadPrivateKey", err)
	if st := s.Stats(); st.Entries != 0 || st.MappedBytes != 0 || st.Rented != 0 || st.Viewed != 0 || st.LockedBytes != 0 {
		r.failf("Stats after Close: %+v", st)
	}
	if l := s.LongRents(); len(l) != 0 {
		r.failf("LongRents after Close: %d", len(l))
	}
	if err := s.Close(); err != nil {
		r.failf("second Close: %v", err)
	}
}

// noGoroutines waits for every goroutine the Shuffler started to end.
func (r *stressRound) noGoroutines() {
	buf := make([]byte, 1<<20)
	for range 200 {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("memshuffle.(*Shuffler)")) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := runtime.Stack(buf, true)
	r.failf("goroutines of the Shuffler outlived Close:\n%s", buf[:n])
}

// stressPurger is a slog.Handler that, once armed, purges its Shuffler from
// the first event it handles.
type stressPurger struct {
	s         *Shuffler
	arm, done atomic.Bool
}

func (p *stressPurger) Enabled(context.Context, slog.Level) bool { return true }
func (p *stressPurger) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *stressPurger) WithGroup(string) slog.Handler            { return p }

func (p *stressPurger) Handle(context.Context, slog.Record) error {
	if p.arm.Load() && !p.done.Load() {
		p.s.Purge()
		p.done.Store(true)
	}
	return nil
}

package memshuffle

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// kthHandler is a slog handler that ends its goroutine at its k-th event
// (never, for k = 0) and, until then, queues an event again each time, so
// that every hand-over of events to the logger has one to hand over.
type kthHandler struct {
	slog.Handler
	s     atomic.Pointer[Shuffler]
	calls atomic.Int64
	k     int64
	end   func()
	on    atomic.Bool
	again bool // end at every event from the k-th on, not at the k-th alone
}

func (h *kthHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *kthHandler) Handle(context.Context, slog.Record) error {
	if !h.on.Load() {
		return nil
	}
	n := h.calls.Add(1)
	if s := h.s.Load(); s != nil {
		s.logLater(slog.LevelInfo, "again")
	}
	if n == h.k || h.again && n > h.k {
		if !h.again {
			h.on.Store(false)
		}
		h.end()
	}
	return nil
}

// goexitFixture is a Shuffler with entries of several sizes in several
// shards, one larger than a rotation batch, and their values.
type goexitFixture struct {
	s    *Shuffler
	hd   *kthHandler
	hs   []Handle
	vals [][]byte
}

func newGoexitFixture(t *testing.T, k int64, end func(), opts ...Option) *goexitFixture {
	t.Helper()
	hd := &kthHandler{k: k, end: end}
	s := newTest(t, append([]Option{WithShards(4), WithLogger(slog.New(hd))}, opts...)...)
	hd.s.Store(s)
	f := &goexitFixture{s: s, hd: hd}
	for i := range 64 {
		n := 24 + i*7
		if i == 5 {
			n = 100 << 10 // larger than a batch: re-encrypted in flight
		}
		v := make([]byte, n)
		rand.Read(v)
		h, err := CopyFrom(s, bytes.Clone(v))
		if err != nil {
			t.Fatal(err)
		}
		f.hs, f.vals = append(f.hs, h), append(f.vals, v)
	}
	// Empty some arenas' worth, for Shuffle to release.
	for i := 0; i < len(f.hs); i += 3 {
		if i == 5 {
			continue
		}
		if err := s.Free(f.hs[i]); err != nil {
			t.Fatal(err)
		}
		f.vals[i] = nil
	}
	return f
}

// intact checks every entry decrypts to its value, nothing is borrowed
// and the invariants hold, no call hanging.
func (f *goexitFixture) intact(t *testing.T) {
	t.Helper()
	if st := f.s.Stats(); st.Rented != 0 || st.Viewed != 0 {
		t.Errorf("%d rented, %d viewed; want none", st.Rented, st.Viewed)
	}
	withTimeout(t, "Rent", func() {
		for i, h := range f.hs {
			if f.vals[i] == nil {
				continue
			}
			b, err := RentSlice[byte](f.s, h)
			if err != nil {
				t.Errorf("entry %d: %v", i, err)
				continue
			}
			if !bytes.Equal(b, f.vals[i]) {
				t.Errorf("entry %d differs", i)
			}
			if err := f.s.Return(h); err != nil {
				t.Error(err)
			}
		}
	})
	withTimeout(t, "check", func() {
		if err := f.s.check(); err != nil {
			t.Error(err)
		}
	})
}

// auxAfterClose closes s, with a timeout, and returns the bytes of regions
// it still counts.
func auxAfterClose(t *testing.T, s *Shuffler) int64 {
	t.Helper()
	withTimeout(t, "Close", func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	st := s.Stats()
	return st.MappedBytes + s.aux.Locked() + s.aux.Unlocked()
}

var goexitCiphers = []Cipher{AES256CTR, AES256GCM}

// TestGoexitRotateKeyLogger: a logger handler that ends RotateKey's
// goroutine at any of the rotation's hand-overs of events leaves every
// entry readable, no lock held, no region mapped after Close, and the next
// RotateKey finishing the rotation; the raw key is nowhere in the process.
func TestGoexitRotateKeyLogger(t *testing.T) {
	// No collection may shrink, and so copy, a stack holding a key before
	// RotateKey has taken it off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, c := range goexitCiphers {
		// How many events a rotation hands over.
		n := handOvers(t, c, func(s *Shuffler) error { return s.RotateKey(nil, nil) })
		for _, e := range endings {
			for k := int64(1); k <= n; k++ {
				t.Run(fmt.Sprintf("%v/%s/%d", c, e.name, k), func(t *testing.T) {
					f := newGoexitFixture(t, k, e.end, WithCipher(c))
					before := f.s.Stats().KeyRotations
					key, salt := new([32]byte), new([8]byte)
					rand.Read(key[:])
					rand.Read(salt[:])
					p, err := memscan.NewPattern(key[:])
					if err != nil {
						t.Fatal(err)
					}
					f.hd.on.Store(true)
					f.s.logLater(slog.LevelInfo, "first")
					onGoroutine(t, func() { _ = f.s.RotateKey(key, salt) })
					f.hd.on.Store(false)
					if *key != [32]byte{} {
						t.Error("the caller's key is not wiped")
					}
					f.intact(t)
					// A RotateKey that first finishes the rotation left
					// part-way, ended at its first hand-over, before its
					// own key is copied in: on the caller's stack this time.
					var p2 *memscan.Pattern
					f.hd.k = f.hd.calls.Load() + 1
					f.hd.on.Store(true)
					f.s.logLater(slog.LevelInfo, "first")
					onGoroutine(t, func() {
						// Grown first: a stack that grows while the key
						// is on it is copied before RotateKey runs (the
						// caveat SECURITY.md gives), and rand.Read and
						// NewPattern below may grow a new goroutine's.
						stacktest.Grow(64)
						var key2 [32]byte
						var salt2 [8]byte
						rand.Read(key2[:])
						p2, _ = memscan.NewPattern(key2[:])
						_ = f.s.RotateKey(&key2, &salt2)
						if key2 != [32]byte{} {
							t.Error("the caller's second key is not wiped")
						}
					})
					f.hd.on.Store(false)
					f.intact(t)
					withTimeout(t, "RotateKey", func() {
						if err := f.s.RotateKey(nil, nil); err != nil {
							t.Errorf("next RotateKey: %v", err)
						}
					})
					if got := f.s.Stats().KeyRotations; got < before+1 {
						t.Errorf("%d rotations after, %d before", got, before)
					}
					f.intact(t)
					if e.name == "Goexit" && k%4 == 1 && !raceBuild {
						if hits := unguarded(t, scanSelf(t, p)); len(hits) != 0 {
							t.Errorf("%d copies of the raw key: %s", len(hits), hitList(hits))
						}
						if hits := unguarded(t, scanSelf(t, p2)); len(hits) != 0 {
							t.Errorf("%d copies of the second raw key: %s", len(hits), hitList(hits))
						}
					}
					if left := auxAfterClose(t, f.s); left != 0 {
						t.Errorf("%d bytes still mapped after Close", left)
					}
				})
			}
		}
	}
}

// TestGoexitRotateKeyScanControl: the scan of TestGoexitRotateKeyLogger
// finds a planted copy of a key.
func TestGoexitRotateKeyScanControl(t *testing.T) {
	skipScanUnderRace(t)
	key := make32()
	p, err := memscan.NewPattern(key)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(scanSelf(t, p)); n == 0 {
		t.Errorf("control: the planted key was not found")
	}
	Wipe(key)
	runtime.KeepAlive(key)
}

// TestGoexitScheduledRotationLogger: a logger handler that ends the
// goroutine of WithKeyRotation at its k-th event must not end scheduled
// rotation for good.
func TestGoexitScheduledRotationLogger(t *testing.T) {
	for _, c := range goexitCiphers {
		for _, e := range endings {
			for _, k := range []int64{1, 2, 3, 5, 8} {
				t.Run(fmt.Sprintf("%v/%s/%d", c, e.name, k), func(t *testing.T) {
					f := newGoexitFixture(t, k, e.end, WithCipher(c), WithKeyRotation(5*time.Millisecond))
					f.hd.on.Store(true)
					f.s.logLater(slog.LevelInfo, "first")
					deadline := time.Now().Add(5 * time.Second)
					for f.hd.calls.Load() < k && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					if f.hd.calls.Load() < k {
						t.Fatalf("the handler was called %d times", f.hd.calls.Load())
					}
					// Handed over; let the goroutine end.
					time.Sleep(20 * time.Millisecond)
					before := f.s.Stats().KeyRotations
					for f.s.Stats().KeyRotations < before+2 && time.Now().Before(deadline) {
						time.Sleep(5 * time.Millisecond)
					}
					if got := f.s.Stats().KeyRotations; got < before+2 {
						t.Errorf("scheduled rotation stopped: %d rotations, %d when the handler ended its goroutine", got, before)
					}
					f.intact(t)
					if left := auxAfterClose(t, f.s); left != 0 {
						t.Errorf("%d bytes still mapped after Close", left)
					}
				})
			}
		}
	}
}

// TestGoexitShuffleLogger: a logger handler that ends Shuffle's goroutine
// at any of its hand-overs of events leaves every entry readable, no shard
// locked and no region mapped after Close.
func TestGoexitShuffleLogger(t *testing.T) {
	for _, c := range goexitCiphers {
		n := handOvers(t, c, (*Shuffler).Shuffle)
		for _, e := range endings {
			for k := int64(1); k <= n; k++ {
				t.Run(fmt.Sprintf("%v/%s/%d", c, e.name, k), func(t *testing.T) {
					f := newGoexitFixture(t, k, e.end, WithCipher(c))
					f.hd.on.Store(true)
					f.s.logLater(slog.LevelInfo, "first")
					onGoroutine(t, func() { _ = f.s.Shuffle() })
					f.hd.on.Store(false)
					f.intact(t)
					withTimeout(t, "Shuffle", func() {
						if err := f.s.Shuffle(); err != nil {
							t.Errorf("next Shuffle: %v", err)
						}
					})
					f.intact(t)
					if left := auxAfterClose(t, f.s); left != 0 {
						t.Errorf("%d bytes still mapped after Close", left)
					}
				})
			}
		}
	}
}

// TestGoexitBackgroundLogger: the background shuffler's events reach a
// handler that ends its goroutine at its k-th event: entries intact, Close
// returns, nothing left mapped.
func TestGoexitBackgroundLogger(t *testing.T) {
	for _, e := range endings {
		for _, k := range []int64{1, 2, 3, 5} {
			t.Run(fmt.Sprintf("%s/%d", e.name, k), func(t *testing.T) {
				f := newGoexitFixture(t, k, e.end)
				f.hd.on.Store(true)
				f.s.logLater(slog.LevelInfo, "first")
				stop, err := f.s.StartBackgroundShuffle(context.Background(), 0)
				if err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for f.hd.calls.Load() < k && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				withTimeout(t, "stop", stop)
				f.hd.on.Store(false)
				f.intact(t)
				if left := auxAfterClose(t, f.s); left != 0 {
					t.Errorf("%d bytes still mapped after Close", left)
				}
			})
		}
	}
}

// handOvers returns how many times op, on a fixture of cipher c with one
// event waiting, hands events to the logger: the points a handler can end
// its goroutine at.
func handOvers(t *testing.T, c Cipher, op func(*Shuffler) error) int64 {
	t.Helper()
	f := newGoexitFixture(t, 0, nil, WithCipher(c))
	f.hd.on.Store(true)
	f.s.logLater(slog.LevelInfo, "first")
	if err := op(f.s); err != nil {
		t.Fatal(err)
	}
	n := f.hd.calls.Load()
	f.hd.on.Store(false)
	t.Logf("%v: %d hand-overs", c, n)
	return n
}

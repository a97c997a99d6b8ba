package memshuffle

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// chunkReader yields n bytes of 'x', then a newline, in reads of at most
// 64 bytes, and has no Len: ReadAll and ReadUntil grow their entry twice
// over on the way.
type chunkReader struct{ n int }

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.n < 0 {
		return 0, io.EOF
	}
	m := min(len(p), r.n+1, 64)
	for i := range m {
		p[i] = 'x'
		if r.n == 0 {
			p[i] = '\n'
		}
		r.n--
	}
	return m, nil
}

// pins is the sum of the shards' counts of pinned borrows.
func pins(s *Shuffler) (n int) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.pins
		sh.mu.Unlock()
	}
	return n
}

// TestGoexitFillLogger: ReadAll and ReadUntil rent, grow, copy and free
// entries, and every one of those calls may hand waiting events to the
// logger, as the Alloc and fill of ReadFrom and CopyFrom do. A handler that ends the goroutine at any of them must leave no
// entry, no rent and no pin behind, and no pin ended twice: a count below
// the borrows still running let Close unmap a shard under a Borrow
// callback, which then faulted. At every k-th event, for each of the
// three endings; with one shard and with four.
func TestGoexitFillLogger(t *testing.T) {
	all := append(bytes.Repeat([]byte{'x'}, 200), '\n')
	for _, c := range []struct {
		name string
		read func(s *Shuffler, src Handle) (Handle, error)
		want []byte
		src  bool // read copies an entry made before, which stays
	}{
		{"ReadAll", func(s *Shuffler, src Handle) (Handle, error) { return ReadAll(s, &chunkReader{n: 200}, 1<<20) }, all, false},
		{"ReadAll at its limit", func(s *Shuffler, src Handle) (Handle, error) { return ReadAll(s, &chunkReader{n: 200}, len(all)) }, all, false},
		// The delimiter is not kept.
		{"ReadUntil", func(s *Shuffler, src Handle) (Handle, error) { return ReadUntil(s, &chunkReader{n: 200}, '\n', 1<<20) }, all[:200], false},
		{"ReadFrom", func(s *Shuffler, src Handle) (Handle, error) { return ReadFrom(s, bytes.NewReader(all), len(all)) }, all, false},
		{"CopyFrom", func(s *Shuffler, src Handle) (Handle, error) { return CopyFrom(s, bytes.Clone(all)) }, all, false},
		{"Clone", func(s *Shuffler, src Handle) (Handle, error) { return Clone(s, src) }, all, true},
	} {
		for _, shards := range []int{1, 4} {
			// How many events a read hands over, with one more waiting
			// at each: the points a handler can end the goroutine at.
			hd := &kthHandler{}
			s := newTest(t, WithShards(shards), WithLogger(slog.New(hd)))
			src := source(t, s, c.src, all)
			hd.s.Store(s)
			hd.on.Store(true)
			s.logLater(slog.LevelInfo, "first")
			if _, err := c.read(s, src); err != nil {
				t.Fatal(err)
			}
			n := hd.calls.Load()
			for _, e := range endings {
				// Again: Goexit at every hand-over from the k-th on, the
				// cleanup's own included, which a second Goexit ends part-way.
				agains := []bool{false}
				if e.name == "Goexit" {
					agains = append(agains, true)
				}
				for _, again := range agains {
					for k := int64(1); k <= n; k++ {
						t.Run(fmt.Sprintf("%s/shards=%d/%s/again=%v/%d", c.name, shards, e.name, again, k), func(t *testing.T) {
							hd := &kthHandler{k: k, end: e.end, again: again}
							s := newTest(t, WithShards(shards), WithLogger(slog.New(hd)))
							src := source(t, s, c.src, all)
							kept := s.Stats().Entries
							hd.s.Store(s)
							hd.on.Store(true)
							s.logLater(slog.LevelInfo, "first")
							var h Handle
							var err error
							returned := false
							onGoroutine(t, func() { h, err = c.read(s, src); returned = true })
							hd.on.Store(false)
							st := s.Stats()
							switch {
							case !returned:
								if st.Entries != kept {
									t.Errorf("%d entries left, want %d", st.Entries, kept)
								}
							case err != nil:
								t.Errorf("%s: %v", c.name, err)
							default:
								got, rerr := RentSlice[byte](s, h)
								if rerr != nil || !bytes.Equal(got, c.want) {
									t.Errorf("the entry read holds %q (%v)", got, rerr)
								}
								s.Return(h)
							}
							if st.Rented != 0 || st.Viewed != 0 {
								t.Errorf("%d rented, %d viewed; want none", st.Rented, st.Viewed)
							}
							if p := pins(s); p != 0 {
								t.Errorf("%d pins left, want 0", p)
							}
							if err := s.check(); err != nil {
								t.Error(err)
							}
						})
					}
				}
			}
		}
	}
}

// goexitOnceHandler ends the goroutine of its first event with
// runtime.Goexit, and counts every event it is given, but for the one a
// refused lock of memory raises (see lockEvent).
type goexitOnceHandler struct {
	slog.Handler
	n atomic.Int64
}

func (h *goexitOnceHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *goexitOnceHandler) Handle(_ context.Context, r slog.Record) error {
	if lockEvent(r) {
		return nil
	}
	if h.n.Add(1) == 1 {
		runtime.Goexit()
	}
	return nil
}

// lockEvent reports whether r is the event a refused lock of memory
// raises, once per Shuffler: where the system locks little or nothing
// (ulimit -l 0) New itself raises it, and a handler meant for another
// event would end the test's own goroutine there.
func lockEvent(r slog.Record) bool {
	return strings.HasPrefix(r.Message, "memshuffle: memory not locked")
}

// TestGoexitLoggerInNew: a handler that ends the goroutine at the event
// New raises, when the system refuses to lock the Shuffler's own region,
// leaves no Shuffler open: New closes the one it made, which the caller
// never gets. It was left open, registered and unreachable, with its
// memory and its goroutines, until the process ended.
func TestGoexitLoggerInNew(t *testing.T) {
	for _, opts := range [][]Option{nil, {WithRentTracking(time.Hour), WithKeyRotation(time.Hour)}} {
		open := func() int {
			o := &openShufflers
			o.mu.Lock()
			defer o.mu.Unlock()
			return len(o.set)
		}
		before := open()
		refuse(t, osmem.OpLock)
		returned := false
		onGoroutine(t, func() {
			s, err := New(append(opts, WithLogger(slog.New(lockEndingHandler{})))...)
			if err == nil {
				s.Close()
			}
			returned = true
		})
		osmem.SetFault(nil)
		if returned {
			t.Fatal("New returned: no event ended its goroutine")
		}
		if n := open() - before; n != 0 {
			t.Errorf("%d Shufflers left open by a New whose goroutine the logger ended", n)
		}
	}
}

// lockEndingHandler ends the goroutine of the event a refused lock of
// memory raises.
type lockEndingHandler struct{ slog.Handler }

func (lockEndingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (lockEndingHandler) Handle(_ context.Context, r slog.Record) error {
	if lockEvent(r) {
		runtime.Goexit()
	}
	return nil
}

// TestGoexitRentTrackingLogger: WithRentTracking's reports reach the
// logger from a goroutine of its own; a handler that ends it must not end
// rent tracking for good. The first long rent's report ends it; the second
// long rent must still be reported.
func TestGoexitRentTrackingLogger(t *testing.T) {
	hd := &goexitOnceHandler{}
	s := newTest(t, WithRentTracking(10*time.Millisecond), WithLogger(slog.New(hd)))
	a, err := CopyFrom(s, make32())
	if err != nil {
		t.Fatal(err)
	}
	b, err := CopyFrom(s, make32())
	if err != nil {
		t.Fatal(err)
	}
	waitCalls := func(n int64) bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if hd.n.Load() >= n {
				return true
			}
		}
		return false
	}
	if _, err := RentSlice[byte](s, a); err != nil {
		t.Fatal(err)
	}
	if !waitCalls(1) {
		t.Fatal("the first long rent was not reported")
	}
	if _, err := RentSlice[byte](s, b); err != nil {
		t.Fatal(err)
	}
	if !waitCalls(2) {
		t.Error("rent tracking stopped after the handler ended its goroutine: the second long rent was not reported")
	}
	s.Return(a)
	s.Return(b)
}

// source returns an entry holding b, made with no logger event waiting,
// when needed, and the zero Handle otherwise.
func source(t *testing.T, s *Shuffler, needed bool, b []byte) Handle {
	t.Helper()
	if !needed {
		return Handle{}
	}
	h, err := CopyFrom(s, bytes.Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

package memshuffle

import (
	"fmt"
	"log/slog"
	"path"
	"runtime"
	"strings"
	"time"
)

// RentInfo describes a rent or view held longer than the threshold given
// to WithRentTracking.
type RentInfo struct {
	Handle Handle    // the entry rented or viewed
	Since  time.Time // when the rent (or the first of the views) began
	Stack  string    // where it began: function, file and line per frame
}

type rentRecord struct {
	since    time.Time
	pcs      []uintptr
	reported bool
}

// WithRentTracking records where every Rent and View was taken and reports
// those held longer than threshold: in Stats.LongRents, by LongRents, and,
// with WithLogger, as a warning with the stack, once per rent. It costs a
// stack capture per rent, so it is meant for finding a forgotten Return in
// development or in a canary, not for every production process. A goroutine
// checks the rents every threshold/2, but no more often than every 10 ms,
// until Close.
// New rejects a threshold of zero or less with ErrInvalidOption.
func WithRentTracking(threshold time.Duration) Option {
	return optionFunc(func(c *config) error {
		if threshold <= 0 {
			return fmt.Errorf("%w: WithRentTracking(%v): want a positive duration", ErrInvalidOption, threshold)
		}
		c.trackAfter = threshold
		return nil
	})
}

// WithLogger sends the Shuffler's events to l: long-held rents (with
// WithRentTracking), key rotations and scheduled rotations that failed,
// the first refused memory lock (Stats.LockFailures counts the others),
// and entries that failed authentication
// (ErrTampered, with an authenticated cipher). Events never
// carry a secret, a key or an address. The handler runs on the goroutine
// of the call that raised the event or on one of the Shuffler's own, never
// while a shard is locked: events raised under a shard lock wait until the
// call has let go of it, those of the background shuffler until its cycle
// ends (up to 256 of them; Stats counts every one). It must not call the
// Shuffler's methods, with two exceptions: Purge, from any event, for a
// handler that treats a forgotten Return, a tampered entry or memory left
// unlocked as an incident, and the stop function StartBackgroundShuffle
// returned. A nil l logs nothing, as
// without WithLogger; a Logger with no Handler (a zero slog.Logger, which
// panics at its first event) makes New fail with ErrInvalidOption. A
// handler that panics loses that event; the call that raised it goes on.
// One that ends the goroutine with runtime.Goexit loses the events handed
// over with it, and leaves no entry rented or viewed by the call it ended.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) error {
		if l != nil && l.Handler() == nil {
			return fmt.Errorf("%w: WithLogger of a slog.Logger with no Handler", ErrInvalidOption)
		}
		c.logger = l
		return nil
	})
}

func (sh *shard) track(h Handle) {
	if sh.s.cfg.trackAfter <= 0 {
		return
	}
	// Enough frames for the library's own (trimmed by formatStack) and a
	// useful part of the caller's.
	pcs := make([]uintptr, 48)
	pcs = pcs[:runtime.Callers(3, pcs)]
	if sh.rents == nil {
		sh.rents = make(map[Handle]rentRecord)
	}
	sh.rents[h] = rentRecord{since: time.Now(), pcs: pcs}
}

func (sh *shard) untrack(h Handle) {
	if sh.rents != nil {
		delete(sh.rents, h)
	}
}

// LongRents lists the rents and views held longer than the WithRentTracking
// threshold now. Without rent tracking it returns nil.
func (s *Shuffler) LongRents() []RentInfo {
	if !s.made() || s.cfg.trackAfter <= 0 {
		return nil
	}
	var out []RentInfo
	var pcs [][]uintptr
	s.eachLongRent(func(h Handle, r *rentRecord) {
		out = append(out, RentInfo{Handle: h, Since: r.since})
		pcs = append(pcs, r.pcs)
	})
	// The stacks are put into words with no shard locked: for 100,000
	// rents that held the shard 223 ms, which a Rent+Return of another
	// entry waited; now 38 ms, the walk of the rents.
	for k := range out {
		out[k].Stack = formatStack(pcs[k])
	}
	return out
}

// eachLongRent calls fn, under the shard lock, for every rent older than
// the threshold.
func (s *Shuffler) eachLongRent(fn func(Handle, *rentRecord)) int {
	n := 0
	cutoff := time.Now().Add(-s.cfg.trackAfter)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for h, r := range sh.rents {
			if r.since.Before(cutoff) {
				n++
				fn(h, &r)
				sh.rents[h] = r
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// watchRents reports long rents until stop is closed.
func (s *Shuffler) watchRents(stop <-chan struct{}, done chan<- struct{}) {
	// The logger's handler runs on this goroutine: one that ends it with
	// runtime.Goexit (as t.FailNow does) would end rent tracking for good,
	// silently. Another goroutine takes over, as in rotateLoop.
	ended := false
	defer func() {
		if !ended {
			select {
			case <-stop:
			default:
				go s.watchRents(stop, done)
				return
			}
		}
		close(done)
	}()
	s.reportLongRents(stop)
	ended = true
}

// reportLongRents is watchRents' loop.
func (s *Shuffler) reportLongRents(stop <-chan struct{}) {
	every := max(s.cfg.trackAfter/2, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		type report struct {
			h     Handle
			since time.Time
			pcs   []uintptr
		}
		var fresh []report
		s.eachLongRent(func(h Handle, r *rentRecord) {
			if !r.reported {
				r.reported = true
				fresh = append(fresh, report{h, r.since, r.pcs})
			}
		})
		for _, r := range fresh {
			if s.cfg.logger != nil {
				s.log(slog.LevelWarn, "memshuffle: rent held longer than threshold",
					slog.String("handle", r.h.String()),
					slog.Duration("held", time.Since(r.since)),
					slog.String("rented_at", formatStack(r.pcs)))
			}
			// Counted once logged, so that a reader of Stats who sees the
			// count finds the event in the log too.
			s.tally.longRentsSeen.Add(1)
		}
	}
}

// libDir is the directory of this package's source files, as the runtime
// reports file names (with -trimpath too).
var libDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return path.Dir(file)
}()

// formatStack prints the frames of a rent, starting at the caller's: the
// library's own frames on top (Rent, Borrow and what they call) are left out.
func formatStack(pcs []uintptr) string {
	var b strings.Builder
	frames := runtime.CallersFrames(pcs)
	caller := false
	for {
		f, more := frames.Next()
		caller = caller || path.Dir(f.File) != libDir || strings.HasSuffix(f.File, "_test.go")
		if caller {
			fmt.Fprintf(&b, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		}
		if !more {
			return b.String()
		}
	}
}

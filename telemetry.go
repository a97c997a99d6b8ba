package memshuffle

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// ErrNameTaken is returned by PublishExpvar when an expvar of that name
// exists already.
var ErrNameTaken = errors.New("memshuffle: expvar name already published")

// expvarMu guards expvarTaking: the names PublishExpvar calls are
// publishing, so that two of them never both find a name free and the
// second logs expvar's complaint and fails. It is not held while expvar
// publishes: expvar.Publish of a name code outside the package took
// meanwhile writes to the log package's output, which is the program's
// code, and code there that published a Shuffler's Stats waited for ever.
var (
	expvarMu     sync.Mutex
	expvarTaking = map[string]bool{}
)

// PublishExpvar publishes the Shuffler's Stats as the expvar name, so they
// appear at /debug/vars with the standard library's expvar handler. The
// value is computed at each read. Stats carry no secret, key or address.
// expvar has no way to unpublish a name: publish once per process, for a
// Shuffler that lives as long as the process. An empty name, which
// /debug/vars would list as "", fails with ErrNilArgument.
func (s *Shuffler) PublishExpvar(name string) error {
	if !s.made() || s.closed.Load() {
		return ErrClosed
	}
	if name == "" {
		return fmt.Errorf("%w: empty expvar name", ErrNilArgument)
	}
	expvarMu.Lock()
	if expvarTaking[name] || expvar.Get(name) != nil {
		expvarMu.Unlock()
		return fmt.Errorf("%w: %q", ErrNameTaken, name)
	}
	expvarTaking[name] = true
	expvarMu.Unlock()
	defer func() {
		// Published, expvar has the name; refused, it is free again.
		expvarMu.Lock()
		delete(expvarTaking, name)
		expvarMu.Unlock()
	}()
	if expvarHookForTest != nil {
		expvarHookForTest()
	}
	return publishExpvar(name, expvar.Func(func() any { return s.Stats() }))
}

// expvarHookForTest, when set, runs between PublishExpvar's check of the
// name and its publication.
var expvarHookForTest func()

// publishExpvar publishes v as name, or fails with ErrNameTaken where
// expvar.Publish panics: code outside the package may publish the name
// between PublishExpvar's check and this call, and expvar has no way to
// publish only if the name is free. (expvar logs the reuse through the
// log package before it panics; that line cannot be kept out.)
func publishExpvar(name string, v expvar.Var) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %q, published meanwhile: %v", ErrNameTaken, name, p)
		}
	}()
	expvar.Publish(name, v)
	return nil
}

// tamperDetected counts and reports an entry that failed authentication.
// The caller holds the entry's shard lock: the event waits in the outbox.
func (s *Shuffler) tamperDetected(h Handle) {
	s.tally.tampered.Add(1)
	s.logLater(slog.LevelError, "memshuffle: entry failed authentication", slog.String("handle", h.String()))
}

// outbox holds events raised while a shard may be locked, until a caller
// that holds no shard lock hands them to the logger (flushLog): a handler
// that answers an event with Purge, which locks every shard, would
// otherwise wait for ever on the lock its own caller holds.
type outbox struct {
	mu      sync.Mutex
	events  []event
	pending atomic.Bool

	// away is set while a goroutine flushLogElsewhere started runs, and
	// back, when not nil, is closed once it ends: Close waits for it, so
	// that no event reaches the logger after Close has returned.
	away bool
	back chan struct{}
}

// outboxMax bounds the events waiting; past it they are dropped (Stats
// still counts what they report).
const outboxMax = 256

type event struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// logLater queues an event for flushLog.
func (s *Shuffler) logLater(level slog.Level, msg string, attrs ...slog.Attr) {
	if s.cfg.logger == nil {
		return
	}
	o := &s.out
	o.mu.Lock()
	if len(o.events) < outboxMax {
		o.events = append(o.events, event{level, msg, attrs})
	}
	o.pending.Store(true)
	o.mu.Unlock()
}

// flushLog hands the queued events to the logger. Its callers hold no
// shard lock; it costs one load when nothing waits.
func (s *Shuffler) flushLog() {
	if s.out.pending.Load() {
		s.flushLogSlow()
	}
}

// flushLogElsewhere is flushLog on a goroutine of its own, started only
// when events wait and no such goroutine runs: one whose handler blocks
// leaves the next events queued (up to outboxMax) rather than a goroutine
// for each. It flushes until none waits.
func (s *Shuffler) flushLogElsewhere() {
	o := &s.out
	if !o.pending.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.away {
		return
	}
	o.away = true
	go func() {
		// Deferred, so that a handler that ends this goroutine with
		// runtime.Goexit does not leave away set, and Close waiting for
		// back, for ever.
		locked := false
		defer func() {
			if !locked {
				o.mu.Lock()
			}
			o.away = false
			if o.back != nil {
				close(o.back)
				o.back = nil
			}
			o.mu.Unlock()
		}()
		for {
			s.flushLogSlow()
			o.mu.Lock()
			if !o.pending.Load() {
				locked = true
				return
			}
			o.mu.Unlock()
		}
	}()
}

// awayDone returns nil when no goroutine of flushLogElsewhere runs, and
// otherwise a channel closed once it has ended.
func (o *outbox) awayDone() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.away {
		return nil
	}
	if o.back == nil {
		o.back = make(chan struct{})
	}
	return o.back
}

// flushLogUndoing is flushLogSlow for a call whose work is done but not
// yet returned to its caller: when a handler ends the goroutine with
// runtime.Goexit (t.FailNow does), which neither returns nor panics, undo
// gives back what the caller will never get. A handler's panic is the
// logger's to recover (see log).
func (s *Shuffler) flushLogUndoing(undo func()) {
	flushed := false
	defer func() {
		if !flushed {
			undo()
		}
	}()
	s.flushLogSlow()
	flushed = true
}

func (s *Shuffler) flushLogSlow() {
	o := &s.out
	o.mu.Lock()
	events := o.events
	o.events = nil
	o.pending.Store(false)
	o.mu.Unlock()
	for _, e := range events {
		s.log(e.level, e.msg, e.attrs...)
	}
}

// log sends an event to the WithLogger logger, if any. Callers never pass a
// secret, a key or an address. A panic of the handler drops the event and
// goes no further: it would otherwise end the call that raised the event
// after its work was done (a Rent, with the entry left rented), or the
// Shuffler's own goroutine, and the process with it.
func (s *Shuffler) log(level slog.Level, msg string, attrs ...slog.Attr) {
	if l := s.cfg.logger; l != nil {
		defer func() { _ = recover() }()
		l.LogAttrs(context.Background(), level, msg, attrs...)
	}
}

package memshuffle

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sync"
	"syscall"
)

// openShufflers is every Shuffler New has made and Close has not yet
// released, for PurgeAll. It holds them strongly, so a Shuffler dropped
// without Close is never collected: its arenas and keys live outside the
// Go heap, where nothing but Purge or Close would ever wipe them, and
// collecting the small Go value that knows where they are would leave
// them, mapped and out of PurgeAll's reach, for the life of the process.
// Close takes its own out at once.
var openShufflers struct {
	mu  sync.Mutex
	set map[*Shuffler]struct{}
}

func register(s *Shuffler) {
	o := &openShufflers
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.set == nil {
		o.set = make(map[*Shuffler]struct{})
	}
	o.set[s] = struct{}{}
}

func unregister(s *Shuffler) {
	o := &openShufflers
	o.mu.Lock()
	delete(o.set, s)
	o.mu.Unlock()
}

// registered returns the open Shufflers. Purging happens outside the
// registry's lock: Close takes that lock, and Purge waits for a Close in
// progress.
func registered() []*Shuffler {
	o := &openShufflers
	o.mu.Lock()
	defer o.mu.Unlock()
	all := make([]*Shuffler, 0, len(o.set))
	for s := range o.set {
		all = append(all, s)
	}
	return all
}

// PurgeAll purges every Shuffler of the process that has not been closed,
// as Shuffler.Purge does: every entry, rented ones included, and every key
// is wiped, and each Shuffler answers ErrClosed from then on. It is the
// process-wide form for signal handlers and fatal paths, where the
// Shufflers may not be at hand. A Shuffler the program dropped without
// Close is purged too: until Close, the registry PurgeAll reads keeps
// every Shuffler, and the memory it maps, alive (see New). PurgeAll is
// safe to call concurrently with anything, and more than once. The error
// joins whatever the Purges returned.
func PurgeAll() error {
	var errs []error
	for _, s := range registered() {
		if err := s.Purge(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PurgeAllOnSignal is PurgeOnSignal for the given signals (SIGINT and
// SIGTERM when none are given; nil ones are skipped, so a list of nils
// means the defaults too) and every open Shuffler: when one of the
// signals arrives it runs PurgeAll, then fn, if not nil, with the signal,
// then exits with status 128 plus the signal number. fn runs after the
// secrets are gone, so it may log, remove files or flush output, but cannot
// use any entry; a panic in fn is recovered, and after a panic or a
// runtime.Goexit in fn the process still exits.
// To exit differently, fn may call os.Exit itself; it may also call stop,
// as a shutdown routine shared with the normal exit path would, and the
// process still exits as described. Once a signal has arrived, a stop
// called from any other goroutine waits for fn to return and the process
// to exit (see PurgeOnSignal), so fn must not wait for a goroutine that
// calls stop, such as main running its deferred stop after fn cancelled
// it: neither would ever go on. Let fn do the shutdown work, or have the
// two exchange no more than a signal that does not wait. As with PurgeOnSignal,
// nothing is installed on import, and stop ends the watching goroutine and
// restores the default handling of the signals; it may be called more than
// once. Each call installs a watcher of its own, which a later call does not
// replace: stop the old one first.
func PurgeAllOnSignal(fn func(os.Signal), sigs ...os.Signal) (stop func()) {
	return purgeAllOnSignal(fn, sigs, os.Exit)
}

func purgeAllOnSignal(fn func(os.Signal), sigs []os.Signal, exit func(int)) (stop func()) {
	// A nil signal names none: signal.Notify skips it. Left in, a list of
	// nils would watch nothing at all.
	sigs = slices.DeleteFunc(slices.Clone(sigs), func(sig os.Signal) bool { return sig == nil })
	if len(sigs) == 0 {
		// Never "every signal", as signal.Notify with none would mean: the
		// Go runtime preempts goroutines with SIGURG, and a child's exit
		// raises SIGCHLD.
		sigs = []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	}
	return watchSignals(sigs, exit, func(sig os.Signal) {
		_ = PurgeAll()
		runAfterPurge(fn, sig)
	})
}

// runAfterPurge calls fn, swallowing its panic: the process is about to
// exit, and a panic would end it with a trace instead of the status
// promised.
func runAfterPurge(fn func(os.Signal), sig os.Signal) {
	if fn == nil {
		return
	}
	defer func() { _ = recover() }()
	fn(sig)
}

// SafeExit purges every open Shuffler (PurgeAll) and then exits with the
// given status, as os.Exit does: deferred functions do not run. Use it
// instead of os.Exit wherever secrets are held.
func SafeExit(code int) { safeExit(code, os.Exit) }

func safeExit(code int, exit func(int)) {
	_ = PurgeAll()
	exit(code)
}

// SafePanic purges every open Shuffler (PurgeAll) and then panics with v.
// A recovered SafePanic leaves every Shuffler closed: entries cannot be
// used again, only Close can be called.
func SafePanic(v any) {
	_ = PurgeAll()
	panic(v)
}

// isPanicked is errors.Is(err, ErrPanicked) for an error the caller's code
// returned, whose Is or Unwrap method may panic: that is no match, not a
// panic of the library's call, which no input may make.
func isPanicked(err error) bool {
	is, _ := errorsIs(err, ErrPanicked)
	return is
}

// errorsIs is errors.Is(err, target) where either may be the caller's: an
// Is or Unwrap method of theirs may panic, and their Unwrap methods may
// lead back to an error already seen, where errors.Is loops for ever
// (Unwrap() error) or recurses until the stack overflows, which ends the
// process past any recover (Unwrap() []error). ok is false if a method
// panicked or the walk gave up (see errorWalk), and is with it.
func errorsIs(err, target error) (is, ok bool) {
	defer func() {
		if recover() != nil {
			is, ok = false, false
		}
	}()
	if err == nil || target == nil {
		return err == target, true
	}
	w := errorWalk{target: target, comparable: reflect.TypeOf(target).Comparable(), left: errorWalkSteps}
	is = w.is(err, 0)
	return is, !w.gaveUp
}

// errorWalkSteps and errorWalkDepth are how many errors errorsIs looks at,
// counting an error each time a tree reaches it, and how deep it follows
// Unwrap() []error, before it gives up: errors.Is's walk of a tree that
// joins an error to itself 16 times over takes 65,536 steps, and a cycle
// has no end.
const (
	errorWalkSteps = 1 << 20
	errorWalkDepth = 10000
)

// errorWalk is errors.Is's walk of an error tree, counting its steps.
type errorWalk struct {
	target     error
	comparable bool // target can be compared with ==, as errors.Is asks
	left       int  // steps it may still take
	gaveUp     bool // it had more to look at when left or the depth ran out
}

func (w *errorWalk) is(err error, depth int) bool {
	for err != nil {
		if w.left == 0 || depth == errorWalkDepth {
			w.gaveUp = true
			return false
		}
		w.left--
		if w.comparable && err == w.target {
			return true
		}
		if x, ok := err.(interface{ Is(error) bool }); ok && x.Is(w.target) {
			return true
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if w.is(e, depth+1) {
					return true
				}
				if w.gaveUp {
					return false
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// panicError turns a recovered panic into an error wrapping ErrPanicked,
// keeping an error value reachable with errors.Is and errors.As.
func panicError(what string, p any) error {
	if err, ok := p.(error); ok {
		return fmt.Errorf("%w: %s: %w", ErrPanicked, what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrPanicked, what, p)
}

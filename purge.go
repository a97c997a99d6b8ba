package memshuffle

import (
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"sync"
	"syscall"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Purge wipes every entry of s at once, rented ones included, and the
// Shuffler's keys, then closes it: every later call returns ErrClosed, but
// Close, which unmaps the memory, and Purge, which does nothing. It is
// meant for a signal or panic handler that must destroy secrets before the
// process goes away. Unlike Close it leaves the memory mapped, so another
// goroutine still holding a rented pointer reads zeros instead of faulting;
// a later Close unmaps it. Purge waits for the call holding each shard,
// if any, to let go of it, and for the encryptions and decryptions of
// large entries running with the shard let go to end: most take
// microseconds, but some as long as their work takes (Shuffle holds each
// shard while it moves the shard's entries, tens of milliseconds for a
// million; a 1 GiB entry takes hundreds of milliseconds to encrypt).
//
// A Borrow function, ReadFrom, CopyFrom, ReadAll, ReadUntil or WriteTo
// running during Purge, or calling it, goes on to its end: what it writes
// after Purge is wiped when it returns, and its caller gets ErrClosed, so
// nothing written survives. A slice from
// Rent has no such end: what is written through it after Purge stays until
// Close.
func (s *Shuffler) Purge() error {
	if !s.made() {
		return nil
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
		return nil
	}
	s.closed.Store(true)
	for i := range s.shards {
		s.shards[i].purge()
	}
	s.wipeCiphers()
	if s.own != nil {
		osmem.Wipe(s.own.Data)
	}
	// The secrets are gone; the goroutines that served them can go too.
	// They are told to stop, not waited for: Purge may be running on one of
	// them, from a logger. Close waits for them.
	if s.bgCancel != nil {
		s.bgCancel()
	}
	if s.rotator.stop != nil {
		s.rotator.stop()
	}
	if s.stopWatch != nil {
		close(s.stopWatch)
		s.stopWatch = nil
	}
	return nil
}

// PurgeOnSignal purges the given Shufflers when the process receives SIGINT
// or SIGTERM, then exits with status 128 plus the signal number, as a shell
// reports a process killed by that signal. Nothing happens on import: the
// handler exists only from this call until stop is called. stop ends the
// watching goroutine and restores the default handling of both signals; it
// may be called more than once. Once a signal has arrived, stop waits for
// the purge and the exit, so that a program on its way out that stops the
// watch does not exit first with another status.
func PurgeOnSignal(shufflers ...*Shuffler) (stop func()) {
	return purgeOnSignal(shufflers, os.Exit)
}

func purgeOnSignal(shufflers []*Shuffler, exit func(int)) (stop func()) {
	return watchSignals([]os.Signal{syscall.SIGINT, syscall.SIGTERM}, exit, func(os.Signal) {
		for _, s := range shufflers {
			s.Purge()
		}
	})
}

// watchSignals runs onSignal for the first of sigs the process receives,
// then exits with signalStatus. The exit is deferred, so that the process
// exits even when onSignal ends the goroutine with runtime.Goexit, which no
// recover stops. stop ends the watch and restores the default handling of
// sigs; it may be called more than once. Once a signal has arrived, stop
// waits for the exit, so that a caller who stops the watch on its way out
// does not exit first, with another status; called from onSignal itself
// (a shutdown routine that also runs on a normal exit), it returns at
// once, as the exit it would wait for comes after onSignal returns.
func watchSignals(sigs []os.Signal, exit func(int), onSignal func(os.Signal)) (stop func()) {
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	finished := make(chan struct{})
	signal.Notify(ch, sigs...)
	go func() {
		defer close(finished)
		var sig os.Signal
		select {
		case sig = <-ch:
		case <-done:
			// A signal that came before stop may be waiting too, and
			// select picks at random among what is ready.
			select {
			case sig = <-ch:
			default:
				return
			}
		}
		defer exit(signalStatus(sig))
		handleSignal(onSignal, sig)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
		})
		if !inSignalHandler() {
			<-finished
		}
	}
}

// handleSignal calls onSignal. It is a function of its own so that
// inSignalHandler can find it on the stack.
//
//go:noinline
func handleSignal(onSignal func(os.Signal), sig os.Signal) { onSignal(sig) }

// handleSignalName is handleSignal's name as the runtime reports frames.
var handleSignalName = runtime.FuncForPC(reflect.ValueOf(handleSignal).Pointer()).Name()

// inSignalHandler reports whether the calling goroutine is running a
// watch's onSignal: Go has no goroutine identity to compare, but the
// goroutine's own stack says.
func inSignalHandler() bool {
	pcs := make([]uintptr, 64)
	for skip := 2; ; skip += len(pcs) {
		n := runtime.Callers(skip, pcs)
		frames := runtime.CallersFrames(pcs[:n])
		for {
			f, more := frames.Next()
			if f.Function == handleSignalName {
				return true
			}
			if !more {
				break
			}
		}
		if n < len(pcs) {
			return false
		}
	}
}

// purge wipes every arena of the shard and closes it, under its lock. Purge
// does it to each shard in turn, so callers of other shards may still run
// meanwhile.
func (sh *shard) purge() {
	sh.mu.Lock()
	sh.drainFlight() // or an entry could be made plaintext after the wipe
	sh.Arenas.Wipe()
	sh.purged = true
	sh.closed = true
	// Nothing is held any more: Stats and LongRents say so.
	sh.Counts.Reset()
	sh.rents = nil
	sh.Waiters.WakeAll() // they retry and see ErrClosed
	sh.mu.Unlock()
}

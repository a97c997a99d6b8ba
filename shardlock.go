package memshuffle

import (
	"sync"
	"sync/atomic"
)

// shardLock is a shard's mutex. It also counts the goroutines blocked in
// Lock, so that the long-running work of the background shuffler and of a
// rotation, which lets go of the lock between pieces, can tell whether it
// should also yield the processor to a waiter (see shard.unlockYield).
// Yielding costs that work its place on the processor: with more
// goroutines runnable than processors, a yield after every piece made a
// rotation of 16 MiB take about 1 s instead of 0.05 s, though no one
// waited for the lock.
//
// The count costs nothing while the lock is free: Lock takes it as
// sync.Mutex.Lock does, with one compare-and-swap, and counts only when
// that fails. Lock does not inline (the call to lockSlow puts it over the
// budget), so the paths of every Rent, Return and Alloc write it out.
type shardLock struct {
	mu      sync.Mutex
	waiting atomic.Int32 // goroutines in lockSlow
}

func (l *shardLock) Lock() {
	if !l.mu.TryLock() {
		l.lockSlow()
	}
}

func (l *shardLock) lockSlow() {
	l.waiting.Add(1)
	l.mu.Lock()
	l.waiting.Add(-1)
}

// TryLock is sync.Mutex.TryLock.
func (l *shardLock) TryLock() bool { return l.mu.TryLock() }

func (l *shardLock) Unlock() { l.mu.Unlock() }

// contended reports whether a goroutine is blocked in Lock, or about to
// be: one that has just been woken counts until it holds the lock.
func (l *shardLock) contended() bool { return l.waiting.Load() > 0 }

package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestKeyRotationScheduled: with WithKeyRotation the key changes on its own
// while goroutines rent and return entries, every entry keeps its value, the
// ciphertext at rest changes, and Close stops the goroutine.
func TestKeyRotationScheduled(t *testing.T) {
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			s, err := New(WithShards(4), WithCipher(c), WithKeyRotation(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			m := model{}
			var hs []Handle
			for i := range 200 {
				v := bytes.Repeat([]byte{byte(i) | 1}, 40+i)
				h, err := CopyFrom(s, bytes.Clone(v))
				if err != nil {
					t.Fatal(err)
				}
				m[h] = v
				hs = append(hs, h)
			}
			// Never rented, so only a rotation changes its ciphertext.
			quiet, err := CopyFrom(s, []byte("an entry nobody rents"))
			if err != nil {
				t.Fatal(err)
			}
			m[quiet] = []byte("an entry nobody rents")
			at := rawOf(t, s, quiet)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for g := range 2 {
				wg.Go(func() {
					for i := g; ; i += 2 {
						select {
						case <-stop:
							return
						default:
						}
						h := hs[i%len(hs)]
						err := BorrowSlice(s, h, func(b []byte) error {
							if !bytes.Equal(b, m[h]) {
								return errors.New("entry changed")
							}
							return nil
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			waitFor(t, "5 scheduled rotations", func() bool { return s.Stats().KeyRotations >= 5 })
			close(stop)
			wg.Wait()
			if bytes.Equal(rawOf(t, s, quiet), at) {
				t.Fatal("ciphertext at rest unchanged after rotations")
			}
			verifyModel(t, s, m)
			mustCheck(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			goroutineGone(t, "rotateLoop")
		})
	}
	for _, d := range []time.Duration{0, -time.Second} {
		if _, err := New(WithKeyRotation(d)); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("WithKeyRotation(%v): %v", d, err)
		}
	}
}

// TestKeyRotationPurge: Purge, here from the logger the scheduled rotation
// calls on its own goroutine, stops the rotations without waiting for that
// goroutine; Close then waits for it.
func TestKeyRotationPurge(t *testing.T) {
	testKeyRotationPurge(t, func() {})
}

// TestKeyRotationPurgeSlowCopy is TestKeyRotationPurge with rotations
// running before the entry is made, as they do when CopyFrom is slow.
func TestKeyRotationPurgeSlowCopy(t *testing.T) {
	testKeyRotationPurge(t, func() { time.Sleep(20 * time.Millisecond) })
}

// testKeyRotationPurge is TestKeyRotationPurge with beforeCopy run between
// New and the CopyFrom the rotations are to find. The logger purges only
// once that CopyFrom has returned: the first rotation comes a millisecond
// after New, and a CopyFrom that took longer (a collection, a busy machine)
// found the Shuffler purged and failed with ErrClosed.
func testKeyRotationPurge(t *testing.T, beforeCopy func()) {
	var s *Shuffler
	purged := make(chan error, 1)
	var once sync.Once
	var filled atomic.Bool
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if filled.Load() && strings.Contains(string(p), "key rotated") {
			once.Do(func() { purged <- s.Purge() })
		}
		return len(p), nil
	}), nil))
	s, err := New(WithKeyRotation(time.Millisecond), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	beforeCopy()
	if _, err := CopyFrom(s, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	filled.Store(true)
	if err := errWithin(t, purged, "Purge from the rotation's logger did not return"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	goroutineGone(t, "rotateLoop")
}

// rawOf returns a copy of an entry's bytes at rest.
func rawOf(t *testing.T, s *Shuffler, h Handle) []byte {
	t.Helper()
	b, err := rawBytes(s, h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// errWithin returns the error ch delivers, and fails t with stuck when
// none comes within 10 seconds: a call that deadlocked.
func errWithin(t *testing.T, ch <-chan error, stuck string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal(stuck)
		return nil
	}
}

// TestScheduledRotationFailuresCounted: a scheduled rotation that fails
// (here every mapping of memory is refused, so an authenticated
// Shuffler's rotation finds no memory for its backup buffers) is counted
// in Stats.KeyRotationsFailed as well as logged, so a service with no
// logger sees its keys stop rotating; once memory is mapped again one
// succeeds, and every entry keeps its value. It runs the
// scheduled rotation itself (scheduledRotation, what WithKeyRotation's
// goroutine runs at each tick): with the goroutine, a rotation that ran
// before the fault was set grew the backup buffers, and the later ones
// needed no memory, under -race.
func TestScheduledRotationFailuresCounted(t *testing.T) {
	var logged atomic.Int32
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "scheduled key rotation failed") {
			logged.Add(1)
		}
		return len(p), nil
	}), nil))
	s := newOrSkip(t, WithShards(4), WithArenaSize(4096), WithLockMode(LockStrict), WithCipher(AES256GCM), WithLogger(logger))
	m := model{}
	for i := range 64 {
		h, err := Alloc[byte](s, 3000+50*i) // never rented: a rotation grows the backup buffers
		skipLockFailed(t, err)
		if err != nil {
			t.Fatal(err)
		}
		m[h] = make([]byte, 3000+50*i)
	}
	refuse(t, osmem.OpMap)
	pace := newPacer()
	for range 2 {
		if !s.scheduledRotation(context.Background(), &pace) {
			t.Fatal("a failed rotation stopped the schedule")
		}
	}
	if st := s.Stats(); st.KeyRotationsFailed != 2 || st.KeyRotations != 0 {
		t.Fatalf("%d rotations failed and %d completed, want 2 and 0", st.KeyRotationsFailed, st.KeyRotations)
	}
	if n := logged.Load(); n != 2 {
		t.Errorf("%d failed rotations logged, want 2", n)
	}
	osmem.SetFault(nil)
	if !s.scheduledRotation(context.Background(), &pace) {
		t.Fatal("a rotation stopped the schedule")
	}
	st := s.Stats()
	if st.KeyRotations != 1 || st.KeyRotationsFailed != 2 {
		t.Errorf("%d rotations completed and %d failed, want 1 and 2", st.KeyRotations, st.KeyRotationsFailed)
	}
	if d := st.Sub(Stats{}); d.KeyRotationsFailed != 2 {
		t.Errorf("Stats.Sub: %d failed rotations, want 2", d.KeyRotationsFailed)
	}
	mustCheck(t, s)
	verifyModel(t, s, m)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.scheduledRotation(context.Background(), &pace) {
		t.Error("a rotation on a closed Shuffler did not stop the schedule")
	}
}

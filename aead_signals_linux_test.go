package memshuffle

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// TestAEADKeyNotInSignalFrames rents and returns 16 KiB entries under each
// AEAD mode from four goroutines locked to their threads while another
// sends those threads SIGURG, the runtime's own preemption signal, as fast
// as it can. A signal taken while crypto/aes's GCM or x/crypto's
// ChaCha20-Poly1305 assembly runs makes the kernel save its vector
// registers, round keys or key words, in a frame on the thread's signal
// stack. After the storm the Shuffler is closed, which wipes the AEAD's
// own copy, and the process is scanned for the key's 15 round keys (the
// first two are the key itself). With the signal guard off (the control),
// the frames must be found in some round (with GCM); with it on, in none.
func TestAEADKeyNotInSignalFrames(t *testing.T) {
	if raceBuild {
		t.Skip("scans the whole process after each round, which takes minutes under -race")
	}
	if !aesctr.SetSignalGuardForTest("canary") {
		if os.Getenv("MEMSHUFFLE_EXPECT_CANARY") == "1" {
			t.Fatal("MEMSHUFFLE_EXPECT_CANARY=1, but the canaries are not available")
		}
		t.Skip("the canaries are not available here: AEAD calls are not watched")
	}
	defer aesctr.SetSignalGuardForTest("auto")
	for _, mode := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(mode.String(), func(t *testing.T) {
			// The control: until a round leaves the key behind. Only
			// GCM's does so often enough to count on (about one round
			// in three here: a round key sits in a register for part of
			// each block), where ChaCha20 mixes its key rows from the
			// first instruction of each block, and rarely leaves one.
			aesctr.SetSignalGuardForTest("off")
			found := 0
			controlRounds := 30
			if mode != AES256GCM {
				controlRounds = 3
			}
			for round := range controlRounds {
				if n := aeadSignalRound(t, mode); n > 0 {
					t.Logf("guard off, round %d: %d blocks of the key", round, n)
					found = round + 1
					break
				}
			}
			aesctr.SetSignalGuardForTest("auto")
			switch {
			case found == 0 && mode == AES256GCM:
				t.Fatal("with the guard off no round left the key in a signal frame: the storm or the scan does not work")
			case found == 0:
				t.Log("with the guard off no round left the key in a signal frame")
			}
			for round := range 6 {
				if n := aeadSignalRound(t, mode); n > 0 {
					t.Errorf("round %d: %d blocks of the key left in memory", round, n)
				}
			}
		})
	}
}

// aeadSignalRound runs one storm and returns how many blocks of the key's
// schedule the process holds after Close.
func aeadSignalRound(t *testing.T, mode Cipher) int {
	s := newTest(t, WithCipher(mode), WithShards(1))
	key, salt, ps := keyPatterns(t)
	if err := s.RotateKey(key, salt); err != nil {
		t.Fatal(err)
	}
	const workers = 4
	var (
		stop    atomic.Bool
		ready   sync.WaitGroup // every worker has its thread
		parked  sync.WaitGroup // every worker has stopped renting
		tids    [workers]int
		release = make(chan struct{})
		errs    = make(chan error, workers)
	)
	ready.Add(workers)
	parked.Add(workers)
	for i := range workers {
		h, err := Random(s, 16<<10)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids[i] = unix.Gettid()
			ready.Done()
			for !stop.Load() {
				if _, err := RentSlice[byte](s, h); err != nil {
					errs <- err
					break
				}
				if err := s.Return(h); err != nil {
					errs <- err
					break
				}
			}
			// Parked on its locked thread until the scan is over, so that
			// no other goroutine runs there and takes a signal whose
			// frame would overwrite the storm's last one.
			parked.Done()
			<-release
		}()
	}
	defer close(release)
	ready.Wait()
	pid := os.Getpid()
	// A signal every 20 us or so per thread: more, and the threads spend
	// their time in the handler and in the scheduler (each SIGURG at a
	// safe point preempts the goroutine) rather than in the cipher.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		for _, tid := range tids {
			unix.Tgkill(pid, tid, unix.SIGURG)
		}
		for next := time.Now().Add(20 * time.Microsecond); time.Now().Before(next); {
		}
	}
	stop.Store(true)
	parked.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return hitsOf(t, ps)
}

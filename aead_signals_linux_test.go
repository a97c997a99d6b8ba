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
// sends those threads SIGURG, the runtime's own preemption signal, every
// 20 us. A signal taken while crypto/aes's GCM or x/crypto's
// ChaCha20-Poly1305 assembly runs makes the kernel save its vector
// registers, round keys or key words among them, in a frame on the
// thread's signal stack. After the storm the Shuffler is closed, which
// wipes the AEAD's own copy, and the process is scanned for the key's 15
// round keys (the first two are the key itself): with the watch on, no
// round may leave any. The scan's control is the AEAD's own copy, which
// it must find while the Shuffler is open. The storm's is a few rounds
// with the watch off, which find GCM's round keys in a signal frame now
// and then: they are logged, not required, as how often depends on where
// in the assembly the last signal of each thread lands (about one round in
// three as root with GOMAXPROCS=2, about one in twenty as nobody with
// GOMAXPROCS=4); internal/aesctr's TestSignalWatch shows deterministically
// that the watch wipes such a frame.
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
			aesctr.SetSignalGuardForTest("off")
			leaky := 0
			const controlRounds = 4
			for round := range controlRounds {
				if n := aeadSignalRound(t, mode, round == 0); n > 0 {
					leaky++
				}
			}
			aesctr.SetSignalGuardForTest("auto")
			t.Logf("with the watch off, %d of %d rounds left the key in memory", leaky, controlRounds)
			for round := range 6 {
				if n := aeadSignalRound(t, mode, false); n > 0 {
					t.Errorf("round %d: %d blocks of the key left in memory", round, n)
				}
			}
		})
	}
}

// aeadSignalRound runs one storm and returns how many blocks of the key's
// schedule the process holds after Close. With control, it first checks
// that the scan finds the AEAD's own copy of the key.
func aeadSignalRound(t *testing.T, mode Cipher, control bool) int {
	s := newTest(t, WithCipher(mode), WithShards(1))
	key, salt, ps := keyPatterns(t)
	if err := s.RotateKey(key, salt); err != nil {
		t.Fatal(err)
	}
	if control && hitsOf(t, ps) == 0 {
		t.Fatal("the key in use is not found: the scan finds nothing")
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

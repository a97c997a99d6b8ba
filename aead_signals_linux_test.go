package memshuffle

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/seal"
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
// round may leave any.
//
// A signal the runtime sends to preempt the goroutine, where it stands in
// Go code rather than in assembly, saves the registers elsewhere: in the
// runtime's per-P scratch area. GCM runs Go code between its assembly
// routines with round keys in the registers, so those storms are kept
// apart. In the first kind nothing asks for a preemption: the garbage
// collector is off and the workers yield now and then, before the
// scheduler's 10 ms. In the second a goroutine loops on runtime.GC and the
// workers never yield, so preemptions come all the time. The AEAD runs
// inside secret.Do in secret mode and pinned to its P in the default
// build, where the runtime does not preempt it: no round may leave any of
// the key. In the default build the same storm with the pin off is the
// control, logged: it finds ChaCha20-Poly1305's key now and then, outside
// any signal frame (13 of 80 rounds in one series of runs), so a single run
// of this test cannot show that the pin works; TestAEADCallsPinned
// (internal/seal) and TestAdaptersPinned do, deterministically.
//
// The scan's control is the AEAD's own copy, which it must find while the
// Shuffler is open. The storm's is a few rounds with the watch off, which
// find GCM's round keys in a signal frame now and then: they are logged,
// not required, as how often depends on where in the assembly the last
// signal of each thread lands (about one round in three as root with
// GOMAXPROCS=2, about one in twenty as nobody with GOMAXPROCS=4);
// internal/aesctr's TestSignalWatch shows deterministically that the watch
// wipes such a frame.
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
	// report says where each block lies, through t.Errorf or t.Logf.
	report := func(t *testing.T, say func(string, ...any), what string, round int, hs []memscan.Hit) {
		t.Helper()
		say("%s, round %d: %d blocks of the key left in memory", what, round, len(hs))
		for _, h := range hs {
			t.Logf("  %#x in %s: %s", h.Addr, h.Mapping.Name(), memscan.SignalFrameOf(h.Addr))
		}
	}
	for _, mode := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(mode.String(), func(t *testing.T) {
			if mode == AES256GCM {
				skipGenericGCMSchedule(t)
			}
			// control counts the rounds of storm st that leave the key.
			controlRounds := shortOr(4, 2)
			control := func(what string, st storm) {
				leaky := 0
				for round := range controlRounds {
					st.checkScan = round == 0
					if hs := aeadSignalRound(t, mode, st); len(hs) > 0 {
						leaky++
					}
				}
				t.Logf("with %s, %d of %d rounds left the key in memory", what, leaky, controlRounds)
			}
			aesctr.SetSignalGuardForTest("off")
			control("the watch off", storm{})
			aesctr.SetSignalGuardForTest("auto")
			for round := range shortOr(6, 2) {
				if hs := aeadSignalRound(t, mode, storm{}); len(hs) > 0 {
					report(t, t.Errorf, "signals alone", round, hs)
				}
			}
			// The control of the storms with preemptions: the same rounds
			// with the AEAD calls unpinned, in the default build (secret
			// mode does not pin: secret.Do keeps the preemptions out).
			if !secretMode {
				func() {
					defer seal.SetPinningForTest(seal.SetPinningForTest(false))
					control("preemptions and the AEAD calls unpinned", storm{preempt: true})
				}()
			}
			preempted, rounds := 0, shortOr(4, 2)
			for round := range rounds {
				hs := aeadSignalRound(t, mode, storm{preempt: true})
				if len(hs) == 0 {
					continue
				}
				report(t, t.Errorf, "signals and preemptions", round, hs)
				preempted++
			}
			t.Logf("with preemptions too, %d of %d rounds left the key in memory", preempted, rounds)
		})
	}
}

// storm says how aeadSignalRound runs.
type storm struct {
	// checkScan: first check that the scan finds the AEAD's own copy of
	// the key.
	checkScan bool
	// preempt: a goroutine loops on runtime.GC meanwhile and the workers
	// never yield. Otherwise the collector is off and the workers yield
	// every 32 rounds, so that nothing asks for a preemption.
	preempt bool
}

// aeadSignalRound runs one storm and returns the blocks of the key's
// schedule the process holds after Close.
func aeadSignalRound(t *testing.T, mode Cipher, st storm) []memscan.Hit {
	s := newTest(t, WithCipher(mode), WithShards(1))
	key, salt, ps := keyPatterns(t)
	if err := s.RotateKey(key, salt); err != nil {
		t.Fatal(err)
	}
	if st.checkScan && hitsOf(t, ps) == 0 {
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
	if !st.preempt {
		// Before the workers start: both stop the world, which preempts
		// every running goroutine.
		runtime.GC()
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
	}
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
			for n := 0; !stop.Load(); n++ {
				if !st.preempt && n%32 == 0 {
					runtime.Gosched()
				}
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
	if st.preempt {
		gcDone := make(chan struct{})
		defer func() { <-gcDone }()
		go func() {
			defer close(gcDone)
			for !stop.Load() {
				runtime.GC()
			}
		}()
	}
	pid := os.Getpid()
	// A signal every 20 us or so per thread: more, and the threads spend
	// their time in the handler rather than in the cipher. A SIGURG of
	// the test's own preempts nothing: the runtime preempts only a
	// goroutine it has asked to stop.
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
	hits, err := memscan.ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Skip(err)
	}
	var all []memscan.Hit
	for _, h := range hits {
		all = append(all, h...)
	}
	return all
}

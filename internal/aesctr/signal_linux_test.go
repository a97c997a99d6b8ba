package aesctr

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// TestSignalFrames runs XOR on several locked threads while another thread
// keeps sending them SIGURG (which the runtime takes as a preemption
// request and otherwise ignores), then searches the whole process for the
// plaintext the calls processed, outside the mapping that holds it. Each
// thread's signal stack keeps the frame of the last signal it took. With no
// guard those frames hold the plaintext, which is the control; with signals
// blocked, with detection by the time stamp counter (which every 4 KiB call
// trips, so each one ends with a wipe of the signal stack), and with the
// canaries (which must then have caught signals: the count of their
// detections goes up), none may.
//
// The plaintext is one 16-byte block, repeated, that only the kernel and
// byte-wise Go code ever write, so no vector register of the test holds it.
func TestSignalFrames(t *testing.T) {
	requireSupported(t)
	const storms = 3
	if testing.Short() {
		t.Skip("signal storm; skipped in -short mode")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	names := []string{"off", "block", "detect"}
	if canaryReady() {
		names = append(names, "canary")
	}
	for _, name := range names {
		t.Run("guard="+name, func(t *testing.T) {
			hits := atomic.LoadUint64(&canaryHits)
			if !SetSignalGuardForTest(name) {
				t.Fatalf("SetSignalGuardForTest(%q) refused", name)
			}
			defer SetSignalGuardForTest("auto")
			// A storm can miss: the last signal a thread takes may land
			// between two calls. Each guard gets three storms; the control
			// gets up to six and stops at the first that shows the plaintext.
			found := false
			n := storms
			if name == "off" {
				n = 2 * storms // a control that misses by chance must not fail CI
			}
			for i := range n {
				hits := signalStorm(t, 4096)
				t.Logf("storm %d: plaintext found outside its mapping %d times", i+1, hits)
				found = found || hits > 0
				if name == "off" && found {
					break
				}
				if name != "off" && hits != 0 {
					t.Errorf("guard %s: plaintext found %d times outside its mapping", name, hits)
				}
			}
			if name == "off" && !found {
				t.Errorf("with no guard the plaintext was not found in any signal frame in %d storms: the search or the storm does not work", n)
			}
			caught := atomic.LoadUint64(&canaryHits) - hits
			t.Logf("canary detections: %d", caught)
			if name == "canary" && caught == 0 {
				t.Error("guard canary: no signal detected in the storms")
			}
		})
	}
}

// signalStorm runs the storm under the current guard, each thread calling
// XOR on size bytes, and returns how many times the plaintext was found
// outside its own mapping.
func signalStorm(t *testing.T, size int) int {
	t.Helper()
	const workers = 8
	mem, err := unix.Mmap(-1, 0, workers*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if _, err := unix.Getrandom(mem[:16], 0); err != nil {
		t.Fatal(err)
	}
	for i := 16; i < len(mem); i++ {
		mem[i] = mem[i%16]
	}
	p, err := memscan.NewPattern(mem[:16])
	if err != nil {
		t.Fatal(err)
	}
	lo := uint64(uintptr(unsafe.Pointer(&mem[0])))
	hi := lo + uint64(len(mem))

	key, salt := randomKey(t)
	rk := expand(t, &key)
	var stop atomic.Bool
	release := make(chan struct{})
	tids := make(chan int, workers)
	var running, parked sync.WaitGroup
	for w := range workers {
		running.Add(1)
		parked.Add(1)
		go func() {
			defer running.Done()
			// Locked, so that the thread whose signal stack holds the last
			// frame stays alive until the scan is over.
			runtime.LockOSThread()
			tids <- unix.Gettid()
			var scratch [16]byte
			b := mem[w*size : (w+1)*size]
			for !stop.Load() {
				XOR(rk, &salt, 7, b, b, &scratch)
			}
			parked.Done()
			<-release
		}()
	}
	var ids []int
	for range workers {
		ids = append(ids, <-tids)
	}
	pid := os.Getpid()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		for _, tid := range ids {
			unix.Tgkill(pid, tid, unix.SIGURG)
		}
		time.Sleep(50 * time.Microsecond)
	}
	stop.Store(true)
	parked.Wait()
	defer func() {
		close(release)
		running.Wait()
	}()

	res, err := memscan.ScanProcessAll(pid, []*memscan.Pattern{p})
	if err != nil {
		t.Fatal(err)
	}
	outside := 0
	for _, h := range res[0] {
		if h.Addr < lo || h.Addr >= hi {
			outside++
		}
	}
	return outside
}

// BenchmarkSyscall is the round trip the block guard pays twice and the
// detection threshold is calibrated against: getppid, which does no work in
// the kernel.
func BenchmarkSyscall(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
}

// TestShortCallsGuarded checks that calls on up to detectMax bytes, which
// take their guard from the word guardWord keeps for them rather than from
// a choice worked out per call, run guarded under the automatic choice:
// every Rent and Return of a small entry is such a call. Where that choice
// is the canaries, threads calling XOR on 32 and on detectMax bytes take a
// storm of SIGURG, and the canaries must catch some of the signals (an
// unguarded call counts none; the frame search alone rarely catches a
// signal in so short a call, so it is not the control here) and leave no
// plaintext outside its mapping.
func TestShortCallsGuarded(t *testing.T) {
	requireSupported(t)
	if testing.Short() {
		t.Skip("signal storm; skipped in -short mode")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	if !canaryReady() {
		t.Skip("the automatic choice for short calls is detection here, which counts no catches")
	}
	if !SetSignalGuardForTest("auto") {
		t.Fatal(`SetSignalGuardForTest("auto") refused`)
	}
	for _, size := range []int{32, detectMax} {
		hits := atomic.LoadUint64(&canaryHits)
		// A storm can miss every call; three in a row would not.
		for i := 0; i < 3 && atomic.LoadUint64(&canaryHits) == hits; i++ {
			if found := signalStorm(t, size); found != 0 {
				t.Errorf("size %d: plaintext found %d times outside its mapping", size, found)
			}
		}
		caught := atomic.LoadUint64(&canaryHits) - hits
		t.Logf("size %d: canary detections: %d", size, caught)
		if caught == 0 {
			t.Errorf("size %d: no signal caught in three storms: calls of %d bytes run without the canaries", size, size)
		}
	}
}

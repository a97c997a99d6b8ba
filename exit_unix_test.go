//go:build unix

package memshuffle

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"weak"
)

// PurgeAll acts on every Shuffler of the process, so the tests that call
// it run in a child process of their own, where no other test's Shufflers
// are: TestExitChild plays the part named by MEMSHUFFLE_EXIT_CHILD.
const exitChildEnv = "MEMSHUFFLE_EXIT_CHILD"

var exitChildren = map[string]func(t *testing.T){
	"purgeall":      childPurgeAll,
	"signal":        childSignal,
	"signal-panics": childSignalPanics,
	"signal-goexit": childSignalGoexit,
	"purge-dropped": childPurgeAllDropped,
	"safeexit-fake": childSafeExitFake,
	"safepanic-rec": childSafePanicRecovered,
	"safeexit": func(t *testing.T) {
		_, b := heldSecret(t)
		SafeExit(3)
		t.Fatalf("SafeExit returned; entry holds %q", b)
	},
	"safepanic": func(t *testing.T) {
		heldSecret(t)
		SafePanic("deliberate SafePanic")
	},
}

func TestExitChild(t *testing.T) {
	name := os.Getenv(exitChildEnv)
	if name == "" {
		t.Skip("played by a child process of TestPurgeAll and the exit tests")
	}
	exitChildren[name](t)
}

// runExitChild runs one part in a child process and returns its exit
// status and output.
func runExitChild(t *testing.T, name string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestExitChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), exitChildEnv+"="+name)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func TestPurgeAll(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"purgeall", "signal", "signal-panics", "signal-goexit", "purge-dropped", "safeexit-fake", "safepanic-rec"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, out := runExitChild(t, name)
			if code != 0 || !strings.Contains(out, "--- PASS: TestExitChild") {
				t.Fatalf("child exited %d:\n%s", code, out)
			}
		})
	}
}

func TestSafeExit(t *testing.T) {
	t.Parallel()
	code, out := runExitChild(t, "safeexit")
	if code != 3 || strings.Contains(out, "SafeExit returned") {
		t.Fatalf("child exited %d, want 3:\n%s", code, out)
	}
}

func TestSafePanic(t *testing.T) {
	t.Parallel()
	code, out := runExitChild(t, "safepanic")
	if code != 2 || !strings.Contains(out, "panic: deliberate SafePanic") {
		t.Fatalf("child exited %d, want 2 with the panic:\n%s", code, out)
	}
}

// heldSecret makes a Shuffler with a secret rented, and returns it and the
// rented bytes, which a purge zeroes.
func heldSecret(t *testing.T) (*Shuffler, []byte) {
	t.Helper()
	s := newTest(t)
	h, err := CopyFrom(s, []byte("a secret to purge"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

// mustBePurged fails unless s is closed and the rented bytes b are zeros.
func mustBePurged(t *testing.T, s *Shuffler, b []byte) {
	t.Helper()
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("rented entry still holds %q", b)
	}
	if _, err := Alloc[byte](s, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Alloc after the purge: %v", err)
	}
}

func childPurgeAll(t *testing.T) {
	s1, b1 := heldSecret(t)
	s2 := newTest(t, WithShards(2))
	h2, _ := CopyFrom(s2, []byte("another secret"))
	closed := newTest(t)
	closed.Close()
	if registeredHas(closed) {
		t.Fatal("a closed Shuffler is still registered")
	}
	if err := PurgeAll(); err != nil {
		t.Fatal(err)
	}
	mustBePurged(t, s1, b1)
	if _, err := Rent[byte](s2, h2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rent after PurgeAll: %v", err)
	}
	if err := PurgeAll(); err != nil { // again: nothing left to do
		t.Fatal(err)
	}
	// Purged Shufflers still close, and then leave the registry.
	s1.Close()
	s2.Close()
	if registeredHas(s1) || registeredHas(s2) {
		t.Fatal("closed Shufflers still registered")
	}
}

func childSignal(t *testing.T) {
	s, b := heldSecret(t)
	var code atomic.Int32
	var got atomic.Value
	exited := make(chan struct{})
	stop := purgeAllOnSignal(func(sig os.Signal) {
		// The callback runs after the purge.
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("callback ran before the purge: %q", b)
		}
		got.Store(sig)
	}, []os.Signal{syscall.SIGUSR1}, func(c int) {
		code.Store(int32(c))
		close(exited)
	})
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGUSR1")
	}
	if code.Load() != 128+int32(syscall.SIGUSR1) || got.Load() != syscall.SIGUSR1 {
		t.Fatalf("exit %d after callback with %v", code.Load(), got.Load())
	}
	mustBePurged(t, s, b)
	stop()
	stop()

	// The default signals, and a stopped watcher that does nothing.
	s2, b2 := heldSecret(t)
	stop2 := purgeAllOnSignal(nil, nil, func(int) { t.Error("exit after stop") })
	stop2()
	if !bytes.Equal(b2, []byte("a secret to purge")) {
		t.Fatal("purged without a signal")
	}
	exited3 := make(chan int, 1)
	stop3 := purgeAllOnSignal(nil, nil, func(c int) { exited3 <- c })
	defer stop3()
	expectSignalExit(t, syscall.SIGTERM, exited3, "no exit after SIGTERM")
	mustBePurged(t, s2, b2)
	stop3()

	// Nil signals are skipped: a list of nils watches the defaults.
	s4, b4 := heldSecret(t)
	exited4 := make(chan int, 1)
	stop4 := purgeAllOnSignal(nil, []os.Signal{nil}, func(c int) { exited4 <- c })
	defer stop4()
	expectSignalExit(t, syscall.SIGINT, exited4, "no exit after SIGINT, with only a nil signal given")
	mustBePurged(t, s4, b4)
}

// A callback that panics does not stop the exit.
func childSignalPanics(t *testing.T) {
	s, b := heldSecret(t)
	exited := make(chan int, 1)
	stop := purgeAllOnSignal(func(os.Signal) { panic("callback broke") },
		[]os.Signal{syscall.SIGUSR2}, func(c int) { exited <- c })
	defer stop()
	expectSignalExit(t, syscall.SIGUSR2, exited, "no exit after a panicking callback")
	mustBePurged(t, s, b)
}

func childSafeExitFake(t *testing.T) {
	s, b := heldSecret(t)
	code := -1
	safeExit(7, func(c int) {
		mustBePurged(t, s, b) // before the exit
		code = c
	})
	if code != 7 {
		t.Fatalf("exit %d, want 7", code)
	}
}

func childSafePanicRecovered(t *testing.T) {
	s, b := heldSecret(t)
	defer func() {
		if p := recover(); p != "v" {
			t.Fatalf("recovered %v", p)
		}
		mustBePurged(t, s, b)
	}()
	SafePanic("v")
}

func registeredHas(s *Shuffler) bool {
	for _, r := range registered() {
		if r == s {
			return true
		}
	}
	return false
}

// An open Shuffler is in the registry, a closed one is not, and one dropped
// without Close stays, uncollected, for PurgeAll to reach. It only reads
// the registry, so it runs beside the other tests.
func TestRegistry(t *testing.T) {
	t.Parallel()
	s := newTest(t)
	if !registeredHas(s) {
		t.Fatal("a new Shuffler is not registered")
	}
	w := func() weak.Pointer[Shuffler] {
		d, err := New()
		if err != nil {
			t.Fatal(err)
		}
		return weak.Make(d)
	}()
	for range 3 {
		runtime.GC()
	}
	d := w.Value()
	if d == nil || !registeredHas(d) {
		t.Fatal("a Shuffler dropped without Close was collected, out of PurgeAll's reach")
	}
	d.Close()
	s.Close()
	if registeredHas(s) {
		t.Fatal("a closed Shuffler is still registered")
	}
}

// A callback that ends its goroutine with runtime.Goexit, which no recover
// stops, does not stop the exit either.
func childSignalGoexit(t *testing.T) {
	s, b := heldSecret(t)
	exited := make(chan int, 1)
	stop := purgeAllOnSignal(func(os.Signal) { runtime.Goexit() },
		[]os.Signal{syscall.SIGUSR2}, func(c int) { exited <- c })
	defer stop()
	expectSignalExit(t, syscall.SIGUSR2, exited, "no exit after a callback that called runtime.Goexit")
	mustBePurged(t, s, b)
}

// PurgeAll reaches a Shuffler the program dropped without Close, after
// collections: its keys and entries are wiped. Where the round keys are on
// the Go heap (the crypto/aes fallback), the own region holds no key to
// look at, and the rented entry, outside the heap, is what shows the wipe.
func childPurgeAllDropped(t *testing.T) {
	const secret = "dropped without Close"
	var keys, rented []byte // the own region's and the entry's bytes; not references to the Shuffler
	offHeap := false
	func() {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		h, err := CopyFrom(s, []byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		if rented, err = RentSlice[byte](s, h); err != nil {
			t.Fatal(err)
		}
		keys, offHeap = s.own.Data, s.Stats().KeyOffHeap
	}()
	if offHeap && bytes.Equal(keys, make([]byte, len(keys))) {
		t.Fatal("the key region is zeros before PurgeAll")
	}
	if string(rented) != secret {
		t.Fatalf("the rented entry holds %q before PurgeAll", rented)
	}
	for range 3 {
		runtime.GC()
	}
	if err := PurgeAll(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys, make([]byte, len(keys))) {
		t.Fatal("PurgeAll left the keys of a Shuffler dropped without Close in memory")
	}
	if !bytes.Equal(rented, make([]byte, len(rented))) {
		t.Fatalf("PurgeAll left the entry of a Shuffler dropped without Close: %q", rented)
	}
}

// expectSignalExit sends sig to the process and requires the exit function
// a signal watcher was given to report the signal's exit status on exited,
// within 10 seconds; missing names what failed.
func expectSignalExit(t *testing.T, sig syscall.Signal, exited <-chan int, missing string) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-exited:
		if c != 128+int(sig) {
			t.Fatalf("exit %d after %v", c, sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(missing)
	}
}

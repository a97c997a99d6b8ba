package osmem

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSecretMapFailsSafely makes secret-memory mappings fail on the memlock
// limit hundreds of times while other goroutines make the Go runtime map
// and unmap heap memory, other goroutines map and unmap regions of their
// own, and secret regions that did fit come and go.
// A failed mapping must leave every other mapping alone: if it unmapped
// address space that was no longer its own, the heap would lose memory
// under the goroutines' feet and the process would crash or their data
// would change.
//
// The limit binds only without CAP_IPC_LOCK: as root, the test runs itself
// again as nobody, with an 8 MiB limit.
func TestSecretMapFailsSafely(t *testing.T) {
	if os.Getuid() == 0 {
		asNobody(t, "TestSecretMapFailsSafely")
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Skip(err)
	}
	if lim.Cur == unix.RLIM_INFINITY || lim.Cur > 256<<20 {
		t.Skipf("RLIMIT_MEMLOCK %d is too large to reach", lim.Cur)
	}
	small, err := Map(PageSize(), Flags{Secret: true})
	if errors.Is(err, ErrNoSecret) {
		t.Skip(err)
	}
	if err != nil && lim.Cur < uint64(4*PageSize()) {
		// The limit checks below need one page that fits.
		t.Skipf("RLIMIT_MEMLOCK %d holds no secret page: %v", lim.Cur, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(small)
	tooBig := int(lim.Cur) + 4*PageSize()
	if r, err := Map(tooBig, Flags{Secret: true}); err == nil {
		Unmap(r)
		t.Skipf("a secret mapping above RLIMIT_MEMLOCK (%d bytes) succeeded: the limit does not bind (CAP_IPC_LOCK)", lim.Cur)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var keep [][]byte
			for !stop.Load() {
				// Sizes from pages to megabytes make the runtime map new
				// arenas and spans, which can land anywhere in the address
				// space, gaps left by a failed mmap included.
				b := make([]byte, 1<<(12+rng.IntN(7)))
				v := byte(rng.Uint32())
				for i := range b {
					b[i] = v
				}
				keep = append(keep, b)
				if len(keep) > 16 {
					k := keep[0]
					for i := range k {
						if k[i] != k[0] {
							bad.Add(1)
							break
						}
					}
					keep = keep[1:]
				}
				if rng.IntN(64) == 0 {
					runtime.GC()
				}
			}
		}()
	}
	// Other mappings of this package, at addresses the kernel picks, as a
	// Shuffler's other shards make: the likeliest to land in a gap a
	// failed mapping left.
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for !stop.Load() {
				r, err := Map(PageSize()*(1+rng.IntN(2048)), Flags{})
				if err != nil {
					continue
				}
				v := byte(1 + rng.IntN(255))
				for i := 0; i < len(r.Data); i += PageSize() {
					r.Data[i] = v
				}
				runtime.Gosched()
				for i := 0; i < len(r.Data); i += PageSize() {
					if r.Data[i] != v {
						bad.Add(1)
						break
					}
				}
				Wipe(r.Data)
				Unmap(r)
			}
		}()
	}
	var held []*Region
	failures := 0
	for i := range 400 {
		// Sizes up to and beyond what is left of the limit, so that some
		// fail and some succeed, and the address space keeps changing.
		n := PageSize() * (1 + i%7) * (1 + int(lim.Cur)/PageSize()/16)
		if i%3 == 0 {
			n = tooBig
		}
		r, err := Map(n, Flags{Secret: true})
		if err != nil {
			if !errors.Is(err, ErrLock) && !errors.Is(err, ErrNoSecret) {
				t.Errorf("map %d: %v, want ErrLock or ErrNoSecret", n, err)
			}
			failures++
			if len(held) > 0 {
				Wipe(held[0].Data)
				if err := Unmap(held[0]); err != nil {
					t.Fatal(err)
				}
				held = held[1:]
			}
			continue
		}
		// The region is ours and usable end to end.
		r.Data[0], r.Data[len(r.Data)-1] = 1, 2
		if *(*byte)(unsafe.Pointer(&r.Data[0])) != 1 {
			t.Fatal("secret region lost its data")
		}
		held = append(held, r)
	}
	stop.Store(true)
	wg.Wait()
	for _, r := range held {
		Wipe(r.Data)
		Unmap(r)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d buffers changed under their goroutines", bad.Load())
	}
	if failures < 200 {
		t.Fatalf("only %d of 400 secret mappings failed; the test needs hundreds", failures)
	}
	t.Logf("%d of 400 secret mappings failed on RLIMIT_MEMLOCK %d; heap intact", failures, lim.Cur)
}

// asNobody runs test in a copy of the test binary as user nobody, with
// RLIMIT_MEMLOCK at 8 MiB, as an ordinary user has it.
func asNobody(t *testing.T, test string) {
	t.Helper()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	// t.TempDir's parent is private to root; nobody needs a way in.
	dir, err := os.MkdirTemp("", "osmem-nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "osmem.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "OSMEM_TEST_MEMLOCK=8388608"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatal("as nobody: timed out")
	}
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("as nobody: %v", err)
	}
	// A child that skipped (no memfd_secret on this architecture or
	// kernel, a limit it cannot reach) passes nothing, and says why.
	if strings.Contains(string(out), "--- SKIP: "+test) {
		t.Skip("as nobody, the test skipped: see its output above")
	}
	if !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatal("as nobody: the test did not pass")
	}
}

// TestMain lowers RLIMIT_MEMLOCK in a child started by asNobody, before any
// test runs.
func TestMain(m *testing.M) {
	if v := os.Getenv("OSMEM_TEST_MEMLOCK"); v != "" {
		n, _ := strconv.ParseUint(v, 10, 64)
		lim := unix.Rlimit{Cur: n, Max: n}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// TestSecretLockFaultSeesLength: the kernel locks the whole of a secret
// mapping, guard pages included, so the lock-fault seam, which models the
// memory-lock limit by size, must see that length and refuse the mapping
// with ErrLock, as the kernel refuses it at the limit. It used to see only
// the Op: a test modelling the limit with SetLockFault found every secret
// mapping let through (or refused as unavailable, where memfd_secret is).
func TestSecretLockFaultSeesLength(t *testing.T) {
	const n = 3 * 4096
	var seen atomic.Int64
	SetLockFault(func(m int) error {
		seen.Store(int64(m))
		return ErrInjected
	})
	t.Cleanup(func() { SetLockFault(nil) })
	r, err := Map(n, Flags{Secret: true})
	if err == nil {
		_ = Unmap(r)
		t.Fatal("a secret mapping got through a lock fault refusing every length")
	}
	if !errors.Is(err, ErrLock) || !errors.Is(err, ErrInjected) {
		t.Fatalf("Map: %v; want the injected refusal as ErrLock", err)
	}
	if want := int64(n + 2*PageSize()); seen.Load() != want {
		t.Errorf("the lock fault saw %d bytes, want the whole mapping's %d", seen.Load(), want)
	}
}

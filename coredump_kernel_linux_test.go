package memshuffle

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "kernelcore" {
		os.Exit(kernelCoreHolder())
	}
}

// kernelCoreControl keeps the helper's heap copy of the control marker
// alive until the crash.
var kernelCoreControl []byte

// kernelCoreHolder is the helper process of TestKernelCoreDump: as
// TestForensics's holder, it reads its key, salt and secrets from stdin
// straight into the memory that keeps them, then a control marker onto the
// heap. It rents the fourth secret and waits to be killed; with
// MEMSHUFFLE_KCORE_BUSY set, three goroutines rent and return the other
// secrets meanwhile, a fourth loops on runtime.GC, and CPU profiling is
// on.
func kernelCoreHolder() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &lim); err != nil || lim.Max == 0 {
		fmt.Println("nocore")
		return 0
	}
	lim.Cur = lim.Max
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		fmt.Println("nocore")
		return 0
	}
	s, hs, err := holdFromStdin()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	kernelCoreControl = make([]byte, 32)
	if _, err := io.ReadFull(os.Stdin, kernelCoreControl); err != nil {
		return 1
	}
	for range 3 {
		s.Shuffle()
	}
	if _, err := RentSlice[byte](s, hs[3]); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if os.Getenv("MEMSHUFFLE_KCORE_BUSY") != "" {
		others := append(hs[:3:3], hs[4:]...)
		for g := range 3 {
			go func() {
				for i := g; ; i++ {
					h := others[i%len(others)]
					if _, err := RentSlice[byte](s, h); err == nil {
						s.Return(h)
					}
				}
			}()
		}
		go func() {
			for {
				runtime.GC()
			}
		}()
		pprof.StartCPUProfile(io.Discard)  // more signals
		time.Sleep(300 * time.Millisecond) // every thread takes signals in the cipher
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestKernelCoreDump crashes a helper holding secrets, one of them rented,
// with SIGQUIT under GOTRACEBACK=crash, and searches the core file the
// kernel writes (the dump a crash leaves, where TestForensics takes gcore's)
// for the secrets, the key and its round keys: in the memory the core
// holds, and anywhere else in the file, such as the threads' registers in
// its notes. None may be there. A control marker the helper keeps on its
// heap must be found. The helper is quiet, then busy renting and
// returning on three goroutines beside a GC loop, with CPU profiling on.
//
// In the busy helper, a copy in the FPU state of a signal frame in flight
// (classifyHit) does not fail the test: a crash stops every thread in the
// frame of a signal, and the guard of short calls wipes such a frame only
// when the interrupted call resumes (see TestForensicsSignalLoad). 40 busy
// crashes found no copy at all; with internal/aesctr's signal guard off,
// 10 found none either. So the busy helper tests for stray copies under
// load, not the guard, which TestForensicsSignalLoad tests.
//
// The test skips where the kernel sends cores elsewhere than the crashing
// process's directory (a core_pattern that pipes to a program or names a
// path) or the hard RLIMIT_CORE is 0.
func TestKernelCoreDump(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Skip("no /proc/sys/kernel/core_pattern")
	}
	if pat := strings.TrimSpace(string(raw)); pat == "" || strings.HasPrefix(pat, "|") || strings.Contains(pat, "/") {
		t.Skipf("the kernel writes cores elsewhere: core_pattern %q", pat)
	}
	for _, busy := range []bool{false, true} {
		t.Run(map[bool]string{false: "quiet", true: "busy"}[busy], func(t *testing.T) {
			kernelCoreDump(t, busy)
		})
	}
}

// kernelCoreDump is one helper of TestKernelCoreDump: started, crashed
// and its core searched.
func kernelCoreDump(t *testing.T, busy bool) {
	var asm *aesctrAsm
	if busy {
		if runtime.GOARCH != "amd64" || !aesctr.Supported() {
			t.Skip("the frames of a busy crash are told apart on amd64 with AES-NI only")
		}
		var err error
		if asm, err = loadAesctrAsm(os.Args[0], filepath.Join("internal", "aesctr")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	var stderr bytes.Buffer
	hp := startHelperWith(t, "kernelcore", func(cmd *exec.Cmd) {
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "GOTRACEBACK=crash")
		if busy {
			cmd.Env = append(cmd.Env, "MEMSHUFFLE_KCORE_BUSY=1")
		}
		cmd.Stderr = &stderr
	})
	var key [32]byte
	var salt [8]byte
	rand.Read(key[:])
	rand.Read(salt[:])
	hp.stdin.Write(key[:])
	hp.stdin.Write(salt[:])
	secrets := make([][]byte, forensicSecrets)
	for i := range secrets {
		secrets[i] = make([]byte, 32)
		rand.Read(secrets[i])
		hp.stdin.Write(secrets[i])
	}
	control := make([]byte, 32)
	rand.Read(control)
	hp.stdin.Write(control)
	if !hp.stdout.Scan() {
		t.Fatalf("helper said nothing\n%s", stderr.Bytes())
	}
	switch hp.stdout.Text() {
	case "ready":
	case "nocore":
		t.Skip("the hard RLIMIT_CORE is 0")
	default:
		t.Fatalf("helper said %q", hp.stdout.Text())
	}
	hp.cmd.Process.Signal(unix.SIGQUIT)
	err := hp.cmd.Wait()
	if ws, ok := hp.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.CoreDump() {
		t.Skipf("the kernel wrote no core (%v)", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("want one core file in the helper's directory: %v %v", ents, err)
	}
	core := filepath.Join(dir, ents[0].Name())

	names := []string{"control"}
	forms := [][]byte{control}
	// By halves: a register holds 16 bytes, and so does a frame's copy of
	// one. A copy of a whole secret holds both.
	for i, s := range secrets {
		names = append(names, fmt.Sprintf("secret %d's first half", i), fmt.Sprintf("secret %d's second half", i))
		forms = append(forms, s[:16], s[16:])
	}
	nsecrets := len(forms)
	names = append(names, "key", "key's first half", "key's second half")
	forms = append(forms, key[:], key[:16], key[16:])
	if aesctr.Supported() {
		var rk [aesctr.RoundKeysSize]byte
		aesctr.Expand(&rk, &key)
		for i := 0; i < len(rk); i += 16 {
			names, forms = append(names, fmt.Sprintf("round key %d", i/16)), append(forms, rk[i:i+16])
		}
	}
	ps := make([]*memscan.Pattern, len(forms))
	for i, f := range forms {
		if ps[i], err = memscan.NewPattern(f); err != nil {
			t.Fatal(err)
		}
	}
	inMemory, err := memscan.ScanCoreAll(core, ps)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	if len(inMemory[0]) == 0 {
		t.Fatalf("the control marker is not in the core's memory (%d bytes): the search does not see the helper's heap", len(file))
	}
	var found sigLoadFound
	for i := 1; i < len(forms); i++ {
		hits := inMemory[i]
		if asm != nil && i < nsecrets && len(hits) > 0 {
			hits = sigLoadClassify(t, core, asm, i, hits, &found)
		}
		inFile := bytes.Count(file, forms[i])
		if len(hits) > 0 || inFile > len(inMemory[i]) {
			t.Errorf("%s: %d hits in the core's memory (%d in frames in flight), %d in the whole file",
				names[i], len(inMemory[i]), len(inMemory[i])-len(hits), inFile)
		}
	}
	for _, f := range found.frames {
		t.Log(f)
	}
	if !t.Failed() {
		t.Logf("core of %d bytes: the control found %d times; %d copies of a secret in frames in flight, none elsewhere; no key or round key",
			len(file), len(inMemory[0]), found.inFlight)
	}
}

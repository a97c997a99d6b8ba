package memshuffle

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "sigload" {
		os.Exit(sigLoad())
	}
}

// sigLoadWorkers is the number of goroutines of sigLoad that rent and
// return, each its own entry.
const sigLoadWorkers = 8

// plantedRoundKeys and plantedAESKey hold the deliberate copies of the
// "planted" run of sigLoad, kept reachable so they stay in the heap.
var (
	plantedRoundKeys *[aesctr.RoundKeysSize]byte
	plantedAESKey    *[32]byte
	plantedKeys      [][32]byte // the keys of "rotating-planted"
)

// sigLoad is the helper process of TestForensicsSignalLoad. It reads a key
// and a salt from stdin straight into the buffers RotateKey wipes, and the
// contents of eight entries of MEMSHUFFLE_SIGLOAD_SIZE bytes straight into
// the entries, so the only copies it keeps are the Shuffler's. Then eight
// goroutines rent and return their own entries while another goroutine loops
// on runtime.GC and CPU profiling is on: the preemption signals of the
// collector and the profiler's SIGPROF keep arriving while the cipher runs.
//
// MEMSHUFFLE_SIGLOAD_MODE "planted" first copies the key and its round keys
// into the Go heap, to show that the search finds them there; "unguarded"
// turns off internal/aesctr's signal guard, to show what the guard prevents;
// "rotating" also keeps the background shuffler moving the entries and
// rotates to every key that stdin brings after "ready" (rotateFromStdin),
// and "rotating-planted" keeps a copy of each of those keys on the heap, to
// show that the search covers every key sent.
func sigLoad() int {
	size, err := strconv.Atoi(os.Getenv("MEMSHUFFLE_SIGLOAD_SIZE"))
	if err != nil {
		fmt.Println("error: size:", err)
		return 1
	}
	mode := os.Getenv("MEMSHUFFLE_SIGLOAD_MODE")
	var opts []Option
	if strings.HasPrefix(mode, "rotating") {
		// A rotation visits every shard, and each visit waits its turn
		// for a processor behind the renting goroutines: with the default
		// eight shards, rotations took seconds each on a loaded machine.
		opts = append(opts, WithShards(2))
	}
	s, err := New(opts...)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	key, salt := new([32]byte), new([8]byte)
	if _, err := io.ReadFull(os.Stdin, key[:]); err != nil {
		return 1
	}
	if _, err := io.ReadFull(os.Stdin, salt[:]); err != nil {
		return 1
	}
	switch mode {
	case "planted":
		plantedAESKey = new([32]byte)
		*plantedAESKey = *key
		plantedRoundKeys = new([aesctr.RoundKeysSize]byte)
		if err := aesctr.Expand(plantedRoundKeys, key); err != nil {
			fmt.Println("error:", err)
			return 1
		}
	case "unguarded":
		aesctr.SetSignalGuardForTest("off")
	}
	if err := s.RotateKey(key, salt); err != nil { // wipes key and salt
		fmt.Println("error:", err)
		return 1
	}
	hs := make([]Handle, sigLoadWorkers)
	for i := range hs {
		// Read straight into the entry: the kernel copies it there, and no
		// register or heap buffer of this process holds it on the way.
		if hs[i], err = ReadFrom(s, os.Stdin, size); err != nil {
			fmt.Println("error:", err)
			return 1
		}
	}
	if v := os.Getenv("MEMSHUFFLE_SIGLOAD_PROFILE_HZ"); v != "" {
		// A higher SIGPROF rate than pprof's 100 Hz, to catch signal
		// frames in flight more often when studying them; the runtime
		// warns on stderr that StartCPUProfile cannot set it again.
		hz, err := strconv.Atoi(v)
		if err != nil {
			fmt.Println("error: profile rate:", err)
			return 1
		}
		runtime.SetCPUProfileRate(hz)
	}
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	go func() {
		for {
			runtime.GC()
		}
	}()
	for _, h := range hs {
		go func() {
			for {
				if _, err := RentSlice[byte](s, h); err != nil {
					panic(err)
				}
				if err := s.Return(h); err != nil {
					panic(err)
				}
			}
		}()
	}
	if strings.HasPrefix(mode, "rotating") {
		stop, err := s.StartBackgroundShuffle(context.Background(), 0)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		defer stop()
	}
	// Let every thread take signals in the cipher before the first dump.
	time.Sleep(300 * time.Millisecond)
	fmt.Println("ready")
	if strings.HasPrefix(mode, "rotating") {
		return rotateFromStdin(s, mode == "rotating-planted")
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
	}
	return 0
}

// rotateFromStdin rotates s to each key and salt (40 bytes) that stdin
// brings, until it ends, as a service would rotate to keys it is sent:
// each is read straight into an entry, rented, handed to RotateKey, which
// copies and wipes it, and freed. No other buffer of the process holds it,
// unless plant asks for a copy of each key on the heap, kept reachable.
func rotateFromStdin(s *Shuffler, plant bool) int {
	for {
		h, err := ReadFrom(s, os.Stdin, 40)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0
		}
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		b, err := RentSlice[byte](s, h)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		if plant {
			plantedKeys = append(plantedKeys, [32]byte(b[:32]))
		}
		err = s.RotateKey((*[32]byte)(b[:32]), (*[8]byte)(b[32:40]))
		if err == nil {
			err = s.Return(h)
		}
		if err == nil {
			err = s.Free(h)
		}
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("rotated")
	}
}

// TestForensicsSignalLoad dumps, five times each in .ci/run, a process
// whose goroutines rent and return entries of 32 B and of 1 MiB under
// garbage-collector and profiler signals, and searches every dump for the
// key, each of the 15 round keys, the first-round form of the AES state (the
// salt XOR the first half of round key 0, which every whitened counter block
// carries) and the plaintext of the entries (each is one random 16-byte
// block repeated, so one pattern finds any of its blocks): none may be there.
// gcore leaves out the mappings the kernel marks dump-excluded, and the test
// checks that the only such mappings are the Shuffler's locked, anonymous
// ones and the kernel's own, so the search covers everything else. Controls
// come first so that finding nothing means something: a run that plants the
// key and its round keys in the heap must find them all, and, with
// MEMSHUFFLE_FORENSIC_DUMPS set (as .ci/run does), a run with
// internal/aesctr's signal guard off must find the entries' plaintext in the
// signal frames of at least one of its dumps (two, and up to three more
// while none has a hit). The same search runs, as often as the guarded one,
// on a process that also shuffles in the background and rotates to a new
// key every 40 ms, each key sent to it and read straight into an entry, as
// a service rotating while it serves would: every key it was ever given,
// with its round keys, is searched for in each dump.
//
// One kind of hit is not a leak and does not fail the guarded runs: a copy
// in the FPU state of a signal frame that was still in flight when gcore
// stopped the process (classifyHit). The guard of short calls does not
// block signals; it detects their frames and wipes the signal stack at the
// end of the call the signal interrupted, so a thread stopped while it
// runs the handler, or back in the routine before the wipe, is dumped with
// the frame in place (internal/aesctr's package doc lists the window).
// About one dump in 170 of the 32-byte load catches one; such hits are
// logged and counted as in-flight frames. Every other hit, a frame left
// behind after its call or a copy anywhere else, fails. The unguarded
// control counts every hit, and logs how many it attributes to frames in
// flight: most of its frames are left behind, which the classifier must
// tell.
//
// MEMSHUFFLE_SIGLOAD_PROFILE_HZ raises the helper's SIGPROF rate, and
// MEMSHUFFLE_FORENSIC_KEEP names a directory where the dumps with a hit are
// kept (with a copy of the test binary), to study them with gdb.
func TestForensicsSignalLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gdb; skipped in -short mode")
	}
	if runtime.GOARCH != "amd64" || !aesctr.Supported() {
		t.Skip("the signal guard is internal/aesctr's, which runs on amd64 with AES-NI only")
	}
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Skip("gcore (gdb) not installed")
	}
	// A dump of the loaded process takes gcore three to seven seconds on a
	// busy two-core machine. .ci/run asks for five dumps per size and the
	// unguarded control; go test ./... takes one dump per size and the
	// planted control alone.
	guardedDumps, controlDumps := 1, 0
	if v := os.Getenv("MEMSHUFFLE_FORENSIC_DUMPS"); v != "" {
		if guardedDumps, err = strconv.Atoi(v); err != nil || guardedDumps < 1 {
			t.Fatalf("MEMSHUFFLE_FORENSIC_DUMPS=%q: want a positive number", v)
		}
		controlDumps = 2
	}
	asm, err := loadAesctrAsm(os.Args[0], filepath.Join("internal", "aesctr"))
	if err != nil {
		t.Fatalf("finding internal/aesctr's guarded assembly in the test binary: %v", err)
	}
	for _, tc := range []struct {
		mode        string
		size, dumps int
	}{
		{"planted", 32, 1},
		{"unguarded", 1 << 20, controlDumps},
		{"guarded", 32, guardedDumps},
		{"guarded", 1 << 20, guardedDumps},
		{"rotating-planted", 32, 1},
		{"rotating", 32, guardedDumps},
	} {
		if tc.dumps == 0 {
			continue
		}
		t.Run(fmt.Sprintf("mode=%s/size=%d", tc.mode, tc.size), func(t *testing.T) {
			found := sigLoadDumps(t, gcore, asm, tc.mode, tc.size, tc.dumps)
			// A control that finds nothing by chance must not fail the run:
			// the unguarded process is dumped again, up to three more
			// times, until a frame is caught.
			for retry := 0; tc.mode == "unguarded" && retry < 3 && !anyFound(found); retry++ {
				found = append(found, sigLoadDumps(t, gcore, asm, tc.mode, tc.size, 1)...)
			}
			seen := false
			inFlight, leftBehind := 0, 0
			for i, f := range found {
				t.Logf("dump %d: %s", i+1, f)
				for _, v := range f.frames {
					t.Logf("dump %d: %s", i+1, v)
				}
				seen = seen || f.any() || f.inFlight > 0
				inFlight += f.inFlight
				leftBehind += f.hits - f.inFlight
				switch tc.mode {
				case "planted":
					if f.key == 0 || f.roundKeys != aesctr.RoundKeysSize/16 {
						t.Errorf("dump %d: the planted key and round keys were not all found: %s", i+1, f)
					}
				case "rotating-planted":
					if f.key != f.keys-1 {
						t.Errorf("dump %d: found %d of the %d keys rotated to and planted", i+1, f.key, f.keys-1)
					}
				case "guarded", "rotating":
					if f.any() {
						t.Errorf("dump %d: key material or plaintext outside the Shuffler's dump-excluded memory: %s", i+1, f)
					}
				}
			}
			t.Logf("%d dumps: %d hits, %d in in-flight frames, %d elsewhere", len(found), inFlight+leftBehind, inFlight, leftBehind)
			if tc.mode == "unguarded" && !seen {
				t.Errorf("without the signal guard no dump held plaintext or key material: the load does not reach the cipher's signal frames")
			}
		})
	}
}

// anyFound reports whether any of the dumps had a hit.
func anyFound(found []sigLoadFound) bool {
	for _, f := range found {
		if f.any() || f.inFlight > 0 {
			return true
		}
	}
	return false
}

// sigLoadFound counts, for one dump, the patterns that had at least one
// hit outside the frames of signals in flight at the dump: of the keys the
// process was given, how many were found whole, how many of their round
// keys and first-round states, and of how many entries the plaintext. It
// counts the hits in such frames apart, and keeps the verdict on every hit
// that lies in a signal frame.
type sigLoadFound struct {
	keys, key, roundKeys, firstRound, plaintext int
	where                                       []string
	hits, inFlight                              int // every hit; those in frames in flight
	frames                                      []string
}

// any reports whether the dump held a copy that outlived the call that
// made it.
func (f sigLoadFound) any() bool { return f.key+f.roundKeys+f.firstRound+f.plaintext > 0 }

func (f sigLoadFound) String() string {
	return fmt.Sprintf("of %d keys: key %d, round keys %d of %d, first-round state %d; plaintext of %d of %d entries %v; %d hits in in-flight frames",
		f.keys, f.key, f.roundKeys, 15*f.keys, f.firstRound, f.plaintext, sigLoadWorkers, f.where, f.inFlight)
}

// sigLoadKey is a key and salt given to sigLoad.
type sigLoadKey struct {
	key  [32]byte
	salt [8]byte
}

func newSigLoadKey() *sigLoadKey {
	k := new(sigLoadKey)
	rand.Read(k.key[:])
	rand.Read(k.salt[:])
	return k
}

// Kinds of sigLoad's patterns, which sigLoadFound counts.
const (
	patKey = iota
	patRoundKey
	patFirstRound
	patPlaintext
)

// sigLoadPatterns returns the patterns a dump of sigLoad is searched for,
// each with its kind: for every key, the key, its 15 round keys and the
// first-round state (the salt XOR the first half of round key 0, which
// every whitened counter block carries); then each entry's plaintext block.
func sigLoadPatterns(t *testing.T, keys []*sigLoadKey, blocks [][16]byte) ([]*memscan.Pattern, []int) {
	t.Helper()
	var ps []*memscan.Pattern
	var kinds []int
	add := func(b []byte, kind int) {
		p, err := memscan.NewPattern(b)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		kinds = append(kinds, kind)
	}
	for _, k := range keys {
		var rk [aesctr.RoundKeysSize]byte
		if err := aesctr.Expand(&rk, &k.key); err != nil {
			t.Fatal(err)
		}
		add(k.key[:], patKey)
		for i := 0; i < len(rk); i += 16 {
			add(rk[i:i+16], patRoundKey)
		}
		var first [8]byte
		for i := range first {
			first[i] = k.salt[i] ^ rk[i]
		}
		add(first[:], patFirstRound)
		clear(rk[:])
		clear(first[:])
	}
	for i := range blocks {
		add(blocks[i][:], patPlaintext)
	}
	return ps, kinds
}

// sigLoadRotations is how many keys the parent of a "rotating" sigLoad
// sends before each dump, and the pause between two.
const (
	sigLoadRotations = 4
	sigLoadRotateGap = 40 * time.Millisecond
)

// sigLoadDumps starts sigLoad in mode with entries of size bytes, takes n
// core dumps of it with gcore and reports what each contains. In mode
// "rotating" it sends sigLoadRotations more keys before each dump, and
// searches each dump for every key sent so far.
func sigLoadDumps(t *testing.T, gcore string, asm *aesctrAsm, mode string, size, n int) []sigLoadFound {
	t.Helper()
	keys := []*sigLoadKey{newSigLoadKey()}
	blocks := make([][16]byte, sigLoadWorkers)
	for i := range blocks {
		rand.Read(blocks[i][:])
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MEMSHUFFLE_CHILD=sigload",
		"MEMSHUFFLE_SIGLOAD_SIZE="+strconv.Itoa(size), "MEMSHUFFLE_SIGLOAD_MODE="+mode)
	stdin, _ := cmd.StdinPipe()
	stdoutPipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	stdin.Write(keys[0].key[:])
	stdin.Write(keys[0].salt[:])
	go func() {
		// The entries' contents, 8 MiB at the larger size: written from
		// another goroutine, as the helper reads them while this one waits
		// for "ready".
		w := bufio.NewWriterSize(stdin, 64<<10)
		for i := range blocks {
			for range size / 16 {
				w.Write(blocks[i][:])
			}
		}
		w.Flush()
	}()
	stdout := bufio.NewScanner(stdoutPipe)
	if !stdout.Scan() || stdout.Text() != "ready" {
		t.Fatalf("helper said %q, want ready", stdout.Text())
	}
	pid := cmd.Process.Pid

	checkDumpExcluded(t, pid)

	// The helper says "rotated" after each rotation. The dump waits for all
	// but the last one, so that a rotation is under way as it is taken,
	// except in the control, which must find every key it was sent.
	rotated := make(chan string)
	go func() {
		for stdout.Scan() {
			rotated <- stdout.Text()
		}
		close(rotated)
	}()
	lag := 1
	if mode == "rotating-planted" {
		lag = 0
	}
	dir := t.TempDir()
	var found []sigLoadFound
	for i := range n {
		if strings.HasPrefix(mode, "rotating") {
			for range sigLoadRotations {
				k := newSigLoadKey()
				keys = append(keys, k)
				if _, err := stdin.Write(append(k.key[:], k.salt[:]...)); err != nil {
					t.Fatalf("sending a key to rotate to: %v", err)
				}
				time.Sleep(sigLoadRotateGap)
			}
			for done := i * sigLoadRotations; done < (i+1)*sigLoadRotations-lag; done++ {
				select {
				case line := <-rotated:
					if line != "rotated" {
						t.Fatalf("helper said %q, want rotated", line)
					}
				case <-time.After(time.Minute):
					t.Fatalf("helper rotated to %d keys of %d in a minute", done, len(keys)-1)
				}
			}
		}
		prefix := filepath.Join(dir, "core"+strconv.Itoa(i))
		out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput()
		if err != nil {
			t.Skipf("gcore failed (ptrace not permitted here?): %v\n%s", err, out)
		}
		core := prefix + "." + strconv.Itoa(pid)
		ps, kinds := sigLoadPatterns(t, keys, blocks)
		res, err := memscan.ScanCoreAll(core, ps)
		if err != nil {
			t.Fatal(err)
		}
		f := sigLoadFound{keys: len(keys)}
		for j, hits := range res {
			if len(hits) == 0 {
				continue
			}
			f.hits += len(hits)
			hits = sigLoadClassify(t, core, asm, j, hits, &f)
			if len(hits) == 0 {
				continue
			}
			switch kinds[j] {
			case patKey:
				f.key++
			case patRoundKey:
				f.roundKeys++
			case patFirstRound:
				f.firstRound++
			default:
				f.plaintext++
			}
			for _, h := range hits {
				f.where = append(f.where, fmt.Sprintf("%d@%s", j, h.Mapping.Name()))
			}
		}
		if keep := os.Getenv("MEMSHUFFLE_FORENSIC_KEEP"); keep != "" && f.hits > 0 {
			keepCore(t, keep, core)
		}
		os.Remove(core)
		found = append(found, f)
		time.Sleep(100 * time.Millisecond)
	}
	if strings.HasPrefix(mode, "rotating") {
		// The helper rotated to every key: it is still running, so each
		// rotation it had failed would have ended it with an error.
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("the helper failed while rotating: %v", err)
		}
	}
	return found
}

// checkDumpExcluded fails t unless every mapping of process pid that the
// kernel keeps out of core dumps (VmFlags "dd" in smaps, which gcore
// honours) is one of: the Shuffler's anonymous memory, locked or marked
// wipe-on-fork; a kernel
// special mapping such as [vvar] or [vdso]; or a droppable mapping ("dp",
// MAP_DROPPABLE), which the kernel uses for the state of the vDSO getrandom
// the Go runtime calls and which this library never writes to. A dump then
// leaves out the Shuffler's memory and nothing the library could have
// written a secret to.
func checkDumpExcluded(t *testing.T, pid int) {
	t.Helper()
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var header string
	shuffler := 0
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "VmFlags:" {
			if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
				header = line
			}
			continue
		}
		flags := map[string]bool{}
		for _, fl := range f[1:] {
			flags[fl] = true
		}
		if !flags["dd"] {
			continue
		}
		h := strings.Fields(header)
		path := ""
		if len(h) >= 6 {
			path = h[5]
		}
		switch {
		case path == "" && (flags["lo"] || flags["wf"]):
			// Locked, or (where RLIMIT_MEMLOCK ran out under
			// LockBestEffort) wipe-on-fork, which only the library's
			// mappings are: the Go runtime never asks for it.
			shuffler++
		case strings.HasPrefix(path, "["), path == "" && flags["dp"]:
		default:
			t.Fatalf("dump-excluded mapping that is not the Shuffler's: %s (%s)", header, line)
		}
	}
	if shuffler == 0 {
		t.Fatal("no dump-excluded mapping of the Shuffler's: its memory would be in the dump")
	}
}

// BenchmarkRentReturnSignalGuard is BenchmarkRentReturn under each signal
// guard of internal/aesctr, in one run: what the guard against signal
// frames costs a Rent+Return (two assembly calls) of 32 B and of 1 MiB.
// guard=auto is the default: detection up to 128 bytes, blocking above.
func BenchmarkRentReturnSignalGuard(b *testing.B) {
	if !aesctr.Supported() {
		b.Skip("no AES-NI assembly here")
	}
	for _, guard := range []string{"off", "auto", "detect", "block"} {
		for _, size := range []int{32, 1 << 20} {
			b.Run(fmt.Sprintf("guard=%s/size=%d", guard, size), func(b *testing.B) {
				aesctr.SetSignalGuardForTest(guard)
				defer aesctr.SetSignalGuardForTest("auto")
				benchRentReturn(b, size)
			})
		}
	}
}

// sigLoadClassify records in f the verdict of classifyHit on each hit of
// pattern j in core, counts those in in-flight frames, and returns the
// others.
func sigLoadClassify(t *testing.T, core string, asm *aesctrAsm, j int, hits []memscan.Hit, f *sigLoadFound) []memscan.Hit {
	t.Helper()
	c, threads, maps := openCoreThreads(t, core)
	defer c.Close()
	asm, err := asm.at(maps)
	if err != nil {
		t.Fatal(err)
	}
	var left []memscan.Hit
	for _, h := range hits {
		v := classifyHit(c, threads, asm, h.Addr)
		if v.err == nil {
			f.frames = append(f.frames, fmt.Sprintf("pattern %d at %#x in %s: %s; interrupted in %s",
				j, h.Addr, h.Mapping.Name(), v, v.interrupted))
		}
		if v.inFlight() {
			f.inFlight++
			continue
		}
		left = append(left, h)
	}
	return left
}

// keepCore moves the dump core into dir, beside a copy of the test binary
// that made it, for gdb.
func keepCore(t *testing.T, dir, core string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		if b, err := os.ReadFile(os.Args[0]); err != nil {
			t.Fatal(err)
		} else if err := os.WriteFile(bin, b, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, filepath.Base(core)+"."+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := exec.Command("mv", core, dst).Run(); err != nil {
		t.Fatalf("keeping %s: %v", core, err)
	}
	t.Logf("kept %s (binary %s)", dst, bin)
}

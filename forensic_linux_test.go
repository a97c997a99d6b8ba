package memshuffle

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// The tests here start a copy of the test binary as a helper process; the
// MEMSHUFFLE_CHILD environment variable tells it which part to play.
func init() {
	switch os.Getenv("MEMSHUFFLE_CHILD") {
	case "holder":
		os.Exit(holder())
	case "nobody":
		os.Exit(lockedAsNobody())
	}
}

const forensicSecrets = 8

// holder is the helper process of TestForensics. Its key, salt and secrets
// come from stdin, so none of them is a literal in this binary, and each is
// read straight into the memory that keeps it; then a control marker,
// which it keeps on the Go heap (heldMarker), for the test to find in
// every dump. Then it obeys one command per line: "rent N", "return N",
// "exit".
func holder() int {
	s, hs, err := holdFromStdin()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	heldMarker = make([]byte, 32)
	if _, err := io.ReadFull(os.Stdin, heldMarker); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	// Churn: move everything a few times so freed and moved space exists.
	for range 3 {
		s.Shuffle()
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var i int
		switch {
		case strings.HasPrefix(in.Text(), "rent "):
			fmt.Sscan(in.Text()[5:], &i)
			_, err = RentSlice[byte](s, hs[i])
		case strings.HasPrefix(in.Text(), "return "):
			fmt.Sscan(in.Text()[7:], &i)
			err = s.Return(hs[i])
		default:
			s.Close()
			return 0
		}
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("ok")
	}
	return 0
}

// heldMarker is holder's control marker, kept where a dump must show it.
var heldMarker []byte

// holdFromStdin makes a helper's Shuffler, of two shards, under the key
// and salt stdin brings, and reads forensicSecrets secrets of 32 bytes from
// stdin, each straight into its entry.
func holdFromStdin() (*Shuffler, []Handle, error) {
	s, err := New(WithShards(2))
	if err != nil {
		return nil, nil, err
	}
	key, salt := new([32]byte), new([8]byte)
	if _, err := io.ReadFull(os.Stdin, key[:]); err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(os.Stdin, salt[:]); err != nil {
		return nil, nil, err
	}
	if err := s.RotateKey(key, salt); err != nil { // wipes key and salt
		return nil, nil, err
	}
	hs := make([]Handle, forensicSecrets)
	for i := range hs {
		if hs[i], err = ReadFrom(s, os.Stdin, 32); err != nil {
			return nil, nil, err
		}
	}
	return s, hs, nil
}

// TestForensics holds secrets in a helper process and searches it with
// gcore and with the memscan scanner: at rest no secret appears in the core
// dump or anywhere in the live process, the key and its round keys appear
// in neither the core dump nor anywhere in the live process outside the
// library's own locked, dump-excluded region, and a rented secret appears
// once in the live process, in a locked, dump-excluded mapping, and never
// in the core dump.
func TestForensics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gdb; skipped in -short mode")
	}
	if _, err := exec.LookPath("gcore"); err != nil {
		t.Skip("gcore (gdb) not installed")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	var key [32]byte
	var salt [8]byte
	secrets := make([][]byte, forensicSecrets)
	rand.Read(key[:])
	rand.Read(salt[:])
	hp := startHelper(t, "holder")
	stdin := hp.stdin
	expect := func(want string) {
		t.Helper()
		hp.expect(t, want)
	}
	stdin.Write(key[:])
	stdin.Write(salt[:])
	for i := range secrets {
		secrets[i] = make([]byte, 32)
		rand.Read(secrets[i])
		stdin.Write(secrets[i])
	}
	marker := make([]byte, 32)
	rand.Read(marker)
	stdin.Write(marker)
	expect("ready")
	pid := hp.pid()

	patterns := func(bs ...[]byte) []*memscan.Pattern {
		var ps []*memscan.Pattern
		for _, b := range bs {
			p, err := memscan.NewPattern(b)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		return ps
	}
	secretPats := patterns(secrets...)
	keyPats := patterns(key[:], key[:16], key[16:])
	if aesctr.Supported() {
		var rk [aesctr.RoundKeysSize]byte
		aesctr.Expand(&rk, &key)
		for i := 0; i < len(rk); i += 16 {
			keyPats = append(keyPats, patterns(rk[i:i+16])...)
		}
	}
	dump := func() string {
		t.Helper()
		path, err := gcoreDump(t, pid)
		if err != nil {
			t.Skipf("gcore failed (ptrace not permitted here?): %v", err)
		}
		return path
	}
	// Each dump and each look at the live process is one pass of the
	// scanner for all the patterns involved; res[i] holds the hits of ps[i].
	// Every dump is searched for the control marker too, which must be
	// there: a dump that is empty or cut short, or a scan that misses,
	// would find no secret either.
	markerPat := patterns(marker)[0]
	inCore := func(core string, ps []*memscan.Pattern) [][]memscan.Hit {
		t.Helper()
		res, err := memscan.ScanCoreAll(core, append(ps[:len(ps):len(ps)], markerPat))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res[len(ps)]); n == 0 {
			t.Fatalf("the control marker on the helper's heap is not in the core dump %s", core)
		}
		return res[:len(ps)]
	}
	live := func(ps []*memscan.Pattern) [][]memscan.Hit {
		t.Helper()
		res, err := memscan.ScanProcessAll(pid, ps)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	flat := func(res [][]memscan.Hit) []memscan.Hit {
		var all []memscan.Hit
		for _, hits := range res {
			all = append(all, hits...)
		}
		return all
	}
	guarded := func(h memscan.Hit) bool {
		m := h.Mapping
		return m.Path == "" && m.Locked && m.DontDump
	}
	ns := len(secretPats)
	allPats := append(secretPats[:ns:ns], keyPats...)

	// At rest.
	core := dump()
	res := inCore(core, allPats)
	if n := len(flat(res[:ns])); n != 0 {
		t.Errorf("at rest: %d secret hits in the core dump", n)
	}
	if n := len(flat(res[ns:])); n != 0 {
		t.Errorf("at rest: %d key or round-key hits in the core dump", n)
	}
	res = live(allPats)
	if hits := flat(res[:ns]); len(hits) != 0 {
		t.Errorf("at rest: secrets found in the live process: %+v", hits)
	}
	keyHits := flat(res[ns:])
	for _, h := range keyHits {
		if !guarded(h) {
			t.Errorf("key material outside the locked, dump-excluded region: %+v", h)
		}
	}
	if aesctr.Supported() && len(keyHits) == 0 {
		t.Error("round keys not found at all: the scan is not seeing the process")
	}

	// Rented.
	fmt.Fprintln(stdin, "rent 3")
	expect("ok")
	res = live(secretPats)
	if hits := res[3]; len(hits) != 1 || !guarded(hits[0]) {
		t.Errorf("rented: want one hit in a locked, dump-excluded mapping, got %+v", hits)
	}
	if others := flat(append(res[:3:3], res[4:]...)); len(others) != 0 {
		t.Errorf("rented: other secrets found: %+v", others)
	}
	core = dump()
	if n := len(flat(inCore(core, secretPats))); n != 0 {
		t.Errorf("rented: %d secret hits in the core dump", n)
	}
	fmt.Fprintln(stdin, "return 3")
	expect("ok")
	if hits := flat(live(secretPats)); len(hits) != 0 {
		t.Errorf("returned: secrets found: %+v", hits)
	}
	hp.wait(t)
}

// lockedAsNobody is the helper process of TestLockedAsNobody.
func lockedAsNobody() int {
	const limit = 8 << 20 // ulimit -l 8192
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println("setrlimit:", err)
		return 1
	}
	s, err := New(WithLockMode(LockStrict))
	if err != nil {
		fmt.Println("New:", err)
		return 1
	}
	for i := range 100000 {
		if _, err := Alloc[byte](s, 32); err != nil {
			fmt.Println("Alloc", i, ":", err)
			return 1
		}
	}
	st := s.Stats()
	vmlck := childVmLck()
	fmt.Printf("uid=%d entries=%d live=%d locked=%d unlocked=%d vmlck=%d\n",
		os.Getuid(), st.Entries, st.LiveBytes, st.LockedBytes, st.UnlockedBytes, vmlck)
	if st.Entries != 100000 || st.UnlockedBytes != 0 || st.LockedBytes != vmlck || st.LockFailures != 0 {
		return 1
	}
	return 0
}

// TestLockedAsNobody holds 100,000 live 32-byte secrets as an unprivileged
// user with the usual 8 MiB RLIMIT_MEMLOCK, every byte locked, and checks
// that the kernel's count (VmLck) and Stats agree.
func TestLockedAsNobody(t *testing.T) { runAsNobody(t, "nobody") }

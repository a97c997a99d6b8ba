package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle"
	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// copiesTokens is how many tokens TestKeyCopies issues and verifies, as a
// busy server would in a while.
const copiesTokens = 50_000

// TestKeyCopies issues and verifies copiesTokens tokens with a key read from
// a file, collects garbage, and counts in this process's memory (outside
// the Shuffler's locked, dump-excluded mappings) the key and its HMAC
// blocks key XOR ipad and key XOR opad. A runtimesecret build must find
// none; a default build reports the counts. A copy kept on purpose is found
// first, to show the scan sees the heap.
func TestKeyCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("issues 50,000 tokens and scans the process; skipped in -short mode")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	if raceBuild {
		t.Skip("copy counts are not stable under -race; the run without it checks them")
	}
	// The key goes from crypto/rand to the file; the buffer is wiped once
	// the patterns are made, so the test itself keeps no copy. Its buffers
	// are on the heap: one on the goroutine's stack would be copied, and
	// the old copy left unwiped, whenever the stack grows.
	file := filepath.Join(t.TempDir(), "key")
	key := heapBytes(32)
	rand.Read(key)
	if err := os.WriteFile(file, key, 0o600); err != nil {
		t.Fatal(err)
	}
	var ps []*memscan.Pattern
	names := []string{"key", "key^ipad", "key^opad"}
	for _, x := range []byte{0, 0x36, 0x5c} {
		b := heapBytes(sha256.BlockSize)[:32]
		// Not memmove, which leaves the key in X0-X1, in order, for a
		// signal to save in its frame: one more copy for the scans.
		aesctr.Copy(b, key)
		if x != 0 {
			b = b[:sha256.BlockSize]
		}
		for i := range b {
			b[i] ^= x
		}
		p, err := memscan.NewPattern(b)
		if err != nil {
			t.Fatal(err)
		}
		memshuffle.Wipe(b)
		ps = append(ps, p)
	}
	memshuffle.Wipe(key)

	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := loadKey(s, file)
	if err != nil {
		t.Fatal(err)
	}
	j := &hs256{s: s, key: h, now: testNow}
	start := time.Now()
	for i := range copiesTokens {
		tok, err := j.issue(claims{Sub: "user", Iat: int64(i), Exp: testNow().Unix() + 60})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.GC()

	count := func() []int {
		t.Helper()
		res, err := memscan.ScanProcessAll(os.Getpid(), ps)
		if err != nil {
			t.Fatal(err)
		}
		n := make([]int, len(res))
		for i, hits := range res {
			for _, h := range hits {
				if m := h.Mapping; !(m.Path == "" && m.Locked && m.DontDump) {
					n[i]++
				}
			}
		}
		return n
	}
	got := count()
	t.Logf("%d tokens issued and verified in %v (secret mode %v)", copiesTokens, elapsed.Round(time.Millisecond), memshuffle.SecretMode())
	for i, name := range names {
		t.Logf("copies of the %s: %d", name, got[i])
		if memshuffle.SecretMode() && got[i] != 0 {
			t.Errorf("secret mode: %d copies of the %s", got[i], name)
		}
	}

	// Control: a copy the program keeps is found.
	var kept []byte
	memshuffle.BorrowViewSlice(s, h, func(b []byte) error { kept = append(kept, b...); return nil })
	if after := count(); after[0] != got[0]+1 {
		t.Errorf("control: a kept copy of the key was not found (%d, then %d)", got[0], after[0])
	}
	memshuffle.Wipe(kept)

	// For comparison, not checked: crypto/hmac under a view of the key, the
	// way to use a held key before MAC existed.
	msg := make([]byte, 64)
	for range copiesTokens {
		memshuffle.BorrowViewSlice(s, h, func(k []byte) error {
			m := hmac.New(sha256.New, k)
			m.Write(msg)
			m.Sum(nil)
			return nil
		})
	}
	runtime.GC()
	runtime.GC()
	base := count()
	t.Logf("for comparison, %d HMACs with hmac.New under BorrowViewSlice leave: key %d, key^ipad %d, key^opad %d",
		copiesTokens, base[0], base[1], base[2])
}

// heapBytes returns n zero bytes on the heap, never on the stack.
//
//go:noinline
func heapBytes(n int) []byte { return make([]byte, n) }

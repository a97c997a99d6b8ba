//go:build linux

package memshuffle

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/binary"
	"fmt"
	"hash"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "macflight" {
		os.Exit(macFlightHolder())
	}
}

// macFlightWorkers is how many goroutines of the helper of
// TestMACInFlightPads MAC at once.
const macFlightWorkers = 3

// macFlightMsg is the length of the helper's messages: shorter than a
// block of either hash, so that each inner hash holds the state of key
// XOR ipad alone until its Sum.
const macFlightMsg = 40

// macPlanted holds the helper's planted copies of the pads.
var macPlanted [][]byte

// macFlightHolder is the helper process of TestMACInFlightPads. It reads
// a 32-byte HMAC key from stdin with ReadFrom, then MACs with it, with
// SHA-256 and SHA-512 in turn, on macFlightWorkers goroutines while the
// collector runs without pause, says "busy", and obeys "plant" (put a
// copy of each pad on the heap) and "exit".
func macFlightHolder() int {
	fail := func(err error) int { fmt.Println("error:", err); return 1 }
	s, err := New(WithShards(1))
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	key, err := ReadFrom(s, os.Stdin, 32)
	if err != nil {
		return fail(err)
	}
	stopGCs := startCollecting(0)
	defer stopGCs()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := range macFlightWorkers {
		wg.Go(func() {
			msg := make([]byte, macFlightMsg)
			var mac []byte
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				binary.BigEndian.PutUint64(msg, uint64(w)<<32|uint64(i))
				h := sha256.New
				if i%2 == 1 {
					h = sha512.New
				}
				var err error
				if mac, err = MAC(s, key, h, msg, mac[:0]); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	stop := func() error {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return first
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Println(macMemLine())
	fmt.Println("busy")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "plant":
			err := BorrowViewSlice(s, key, func(k []byte) error {
				for _, bs := range []int{sha256.BlockSize, sha512.BlockSize} {
					for _, x := range []byte{0x36, 0x5c} {
						macPlanted = append(macPlanted, hmacPad(k, bs, x))
					}
				}
				return nil
			})
			if err != nil {
				return fail(err)
			}
			fmt.Println("planted")
		default:
			if err := stop(); err != nil {
				return fail(err)
			}
			for _, p := range macPlanted {
				Wipe(p)
			}
			return 0
		}
	}
	return 0
}

// hmacPad returns key, zero-padded to bs bytes, XOR x: HMAC's key XOR ipad
// (x 0x36) or XOR opad (x 0x5c), either of which gives the key away.
func hmacPad(key []byte, bs int, x byte) []byte {
	b := make([]byte, bs)
	copy(b, key)
	for i := range b {
		b[i] ^= x
	}
	return b
}

// hashState returns the chaining values of h after it has hashed block,
// in the byte order of crypto's digest structs on a little-endian machine
// (the words of MarshalBinary, each reversed): what a heap copy of the
// state looks like.
func hashState(t *testing.T, h hash.Hash, block []byte) []byte {
	t.Helper()
	h.Write(block)
	m, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	word := 4
	if h.BlockSize() == sha512.BlockSize {
		word = 8
	}
	st := m[4 : 4+8*word] // after the 4-byte magic
	for w := 0; w < len(st); w += word {
		for i, j := w, w+word-1; i < j; i, j = i+1, j-1 {
			st[i], st[j] = st[j], st[i]
		}
	}
	return st
}

// TestMACInFlightPads takes dumps of a process that MACs with SHA-256
// and SHA-512 on three goroutines while the collector runs, six reads of
// its memory through /proc and two gcore dumps, and counts the key's
// padded blocks outside the library's memory (its locked, dump-excluded
// mappings and MAC's own, which the helper names): there must be none.
// When MAC used a pad and two hashes on the heap, a pad was in 1 to 4 of
// the 8 dumps in each of 3 runs, though MAC wiped all of it before it
// returned. The hashes' states are counted too, and only logged: crypto's
// Sum copies a state to its frame, where it stays until the call's stack
// is zeroed at its end, so a dump taken meanwhile has it on a stack.
func TestMACInFlightPads(t *testing.T) {
	if testing.Short() && !SecretMode() {
		// As TestAdapterCopies: secret mode's run in .ci/run passes -short.
		t.Skip("takes eight whole-process scans of a helper; skipped in -short mode, except in secret mode")
	}
	if copiesUnderRace {
		t.Skip("too slow under -race")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	key := make([]byte, 32)
	rand.Read(key)
	type form struct {
		name    string
		p       *memscan.Pattern
		counted bool // a hit fails the test
	}
	var forms []form
	add := func(name string, b []byte, counted bool) {
		p, err := memscan.NewPattern(b)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, form{name, p, counted})
		Wipe(b)
	}
	for _, h := range []struct {
		name string
		new  func() hash.Hash
	}{{"SHA-256", sha256.New}, {"SHA-512", sha512.New}} {
		bs := h.new().BlockSize()
		add(h.name+" key^ipad", hmacPad(key, bs, 0x36), true)
		add(h.name+" key^opad", hmacPad(key, bs, 0x5c), true)
		add(h.name+" inner state", hashState(t, h.new(), hmacPad(key, bs, 0x36)), false)
		add(h.name+" outer state", hashState(t, h.new(), hmacPad(key, bs, 0x5c)), false)
	}
	ps := make([]*memscan.Pattern, len(forms))
	for i, f := range forms {
		ps[i] = f.p
	}

	hp := startHelper(t, "macflight")
	hp.stdin.Write(key)
	Wipe(key)
	macLo, macHi := hp.macMemRange(t)
	if macLo == 0 {
		t.Log("MAC's memory was not mapped: the helper's MACs computed on the heap")
	}
	hp.expect(t, "busy")

	count := func(res [][]memscan.Hit) []int {
		counts := make([]int, len(forms))
		for i, hits := range res {
			for _, h := range hits {
				if !libraryMemory(h, macLo, macHi) {
					counts[i]++
				}
			}
		}
		return counts
	}
	live := func() []int { return count(hp.scanLive(t, ps)) }
	core := func() []int {
		res, path, ok := hp.scanCore(t, ps)
		if !ok {
			return nil
		}
		os.Remove(path)
		return count(res)
	}

	total := make([]int, len(forms))
	dumps := 0
	for k := range 8 {
		var c []int
		what := "read of /proc/PID/mem"
		if k%4 == 3 {
			what = "gcore dump"
			if c = core(); c == nil {
				continue
			}
		} else {
			c = live()
		}
		dumps++
		for i, f := range forms {
			total[i] += c[i]
			if c[i] > 0 && f.counted {
				t.Errorf("%s: %d copies of the %s outside the library's memory, want none", what, c[i], f.name)
			}
		}
	}
	for i, f := range forms {
		t.Logf("%-22s %d copies in %d dumps", f.name, total[i], dumps)
	}

	// Control: the same scans find the pads the helper copies to its heap.
	fmt.Fprintln(hp.stdin, "plant")
	hp.expect(t, "planted")
	controls := [][]int{live()}
	if c := core(); c != nil {
		controls = append(controls, c)
	}
	for _, c := range controls {
		for i, f := range forms {
			if f.counted && c[i] == 0 {
				t.Errorf("control: a planted copy of the %s not found", f.name)
			}
		}
	}
	hp.wait(t)
}

package memshuffle

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
)

// copiesOps is how many times the helper process of TestAdapterCopies runs
// each adapter.
const copiesOps = 1000

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "copies" {
		os.Exit(copiesHolder())
	}
}

// plantedKey is where the helper copies a key on request, to show that the
// scan finds a copy the program keeps.
var plantedKey []byte

// copiesHolder is the helper process of TestAdapterCopies. It reads from
// stdin, each preceded by its length as 4 bytes: an HMAC key and an AES-256
// key, which it reads with ReadFrom, and three PKCS#8 keys (Ed25519, ECDSA P-256,
// RSA-2048), which it reads with ReadPrivateKey. Then it runs each adapter
// copiesOps times, collects garbage, says "ready" and obeys "plant" (copy
// the HMAC key and the Ed25519 key's PKCS#8 DER to the heap) and "exit".
func copiesHolder() int {
	fail := func(err error) int { fmt.Println("error:", err); return 1 }
	s, err := New()
	if err != nil {
		return fail(err)
	}
	next := func() (io.Reader, int) {
		var n uint32
		binary.Read(os.Stdin, binary.BigEndian, &n)
		return io.LimitReader(os.Stdin, int64(n)), int(n)
	}
	r, n := next()
	macKey, err := ReadFrom(s, r, n)
	if err != nil {
		return fail(err)
	}
	r, n = next()
	aesKey, err := ReadFrom(s, r, n)
	if err != nil {
		return fail(err)
	}
	aead, err := NewAEAD(s, aesKey)
	if err != nil {
		return fail(err)
	}
	var signers []crypto.Signer
	var keys []Handle
	for range 3 {
		r, _ := next()
		h, err := ReadPrivateKey(s, r)
		if err != nil {
			return fail(err)
		}
		sg, err := NewSigner(s, h)
		if err != nil {
			return fail(err)
		}
		keys = append(keys, h)
		signers = append(signers, sg)
	}

	msg := make([]byte, 64)
	var mac []byte
	for i := range copiesOps {
		binary.BigEndian.PutUint64(msg, uint64(i))
		if mac, err = MAC(s, macKey, sha256.New, msg, mac[:0]); err != nil {
			return fail(err)
		}
	}
	var ecSigs []string
	for _, sg := range signers {
		_, isEC := sg.Public().(*ecdsa.PublicKey)
		for i := range copiesOps {
			binary.BigEndian.PutUint64(msg, uint64(i))
			in, opts := msg, crypto.SignerOpts(crypto.Hash(0))
			if _, ok := sg.Public().(ed25519.PublicKey); !ok {
				d := sha256.Sum256(msg)
				in, opts = d[:], crypto.SHA256
			}
			sig, err := sg.Sign(rand.Reader, in, opts)
			if err != nil {
				return fail(err)
			}
			if isEC {
				ecSigs = append(ecSigs, hex.EncodeToString(sig))
			}
		}
	}
	// The signatures, from which the test works out each one's nonce.
	fmt.Println("ecdsa", strings.Join(ecSigs, ","))
	nonce, sealed := make([]byte, aead.NonceSize()), make([]byte, 0, len(msg)+aead.Overhead())
	for i := range copiesOps {
		binary.BigEndian.PutUint64(nonce, uint64(i))
		if sealed, err = aead.Seal(sealed[:0], nonce, msg, nil); err != nil {
			return fail(err)
		}
		if _, err = aead.Open(msg[:0], nonce, sealed, nil); err != nil {
			return fail(err)
		}
	}
	// Several cycles: crypto/ed25519 and crypto/ecdsa drop a cached key in
	// a cleanup that runs after the collection that finds its owner dead,
	// and the cached key itself goes in the next one.
	for range 4 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println(macMemLine())
	fmt.Println("ready")
	var load *copiesLoad
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "plant":
			// Room for both keys, so that no append leaves a copy behind
			// in a buffer it outgrew, which unplant would not wipe.
			plantedKey = make([]byte, 0, 256)
			BorrowViewSlice(s, macKey, func(b []byte) error { plantedKey = append(plantedKey, b...); return nil })
			BorrowViewSlice(s, keys[0], func(b []byte) error { plantedKey = append(plantedKey, b...); return nil })
			fmt.Println("planted")
		case "unplant":
			Wipe(plantedKey)
			plantedKey = nil
			fmt.Println("unplanted")
		case "busy":
			load = startCopiesLoad(s, macKey, aead, signers)
			time.Sleep(copiesBusy)
			if err := load.err(); err != nil {
				return fail(err)
			}
			fmt.Println("busy")
		default:
			if load != nil {
				if err := load.stop(); err != nil {
					return fail(err)
				}
			}
			runtime.KeepAlive(signers)
			s.Close()
			return 0
		}
	}
	return 0
}

// copiesBusy is how long the helper of TestAdapterCopies runs its load
// before the busy scans, which it goes on with during them.
const copiesBusy = time.Second

// copiesLoad is the helper's busy phase: a service signing (Ed25519,
// ECDSA and, one time in four, RSA), MACing and sealing from several
// goroutines at once, with a collection always under
// way, as in a dump of a busy process.
type copiesLoad struct {
	done    chan struct{}
	wg      sync.WaitGroup
	stopGCs func()
	mu      sync.Mutex
	first   error
}

func startCopiesLoad(s *Shuffler, macKey Handle, aead *AEAD, signers []crypto.Signer) *copiesLoad {
	ed, ec, rk := signers[0], signers[1], signers[2]
	l := &copiesLoad{done: make(chan struct{}), stopGCs: startCollecting(0)}
	for w := range 4 {
		l.wg.Go(func() {
			msg := make([]byte, 64)
			nonce := make([]byte, aead.NonceSize())
			var mac, sealed []byte
			for i := 0; l.running(); i++ {
				binary.BigEndian.PutUint64(msg, uint64(w)<<32|uint64(i))
				binary.BigEndian.PutUint64(nonce, uint64(w)<<32|uint64(i))
				digest := sha256.Sum256(msg)
				_, err := ed.Sign(nil, msg, crypto.Hash(0))
				if err == nil {
					_, err = ec.Sign(rand.Reader, digest[:], crypto.SHA256)
				}
				if err == nil && i%4 == 0 { // an RSA signature costs 20 of the others
					_, err = rk.Sign(rand.Reader, digest[:], crypto.SHA256)
				}
				if err == nil {
					mac, err = MAC(s, macKey, sha256.New, msg, mac[:0])
				}
				if err == nil {
					sealed, err = aead.Seal(sealed[:0], nonce, msg, nil)
				}
				if err != nil {
					l.fail(err)
					return
				}
			}
		})
	}
	return l
}

func (l *copiesLoad) running() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

func (l *copiesLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == nil {
		l.first = err
	}
}

func (l *copiesLoad) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (l *copiesLoad) stop() error {
	close(l.done)
	l.wg.Wait()
	l.stopGCs()
	return l.err()
}

// keyForm is a byte string equivalent to a key, or a set of them (an
// ECDSA signature's nonces): found anywhere in memory it gives the key
// away.
type keyForm struct {
	name string
	ps   []*memscan.Pattern
}

// keyForms returns the forms of each key TestAdapterCopies counts: the
// HMAC key and its two padded blocks; the AES key of NewAEAD and its last
// round key; the Ed25519 seed, its secret scalar
// and its nonce prefix; the ECDSA scalar d; and the RSA d, p, q, dP, dQ
// and qInv. Big
// numbers are counted both big-endian, as in DER, and in the byte order of
// math/big's and crypto/internal/fips140/bigmod's little-endian words.
func keyForms(t *testing.T, macKey, aesKey []byte, ed ed25519.PrivateKey, ec *ecdsa.PrivateKey, rk *rsa.PrivateKey) []keyForm {
	var forms []keyForm
	add := func(name string, b []byte) {
		p, err := memscan.NewPattern(b)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, keyForm{name, []*memscan.Pattern{p}})
		Wipe(b)
	}
	pad := func(x byte) []byte {
		b := make([]byte, sha256.BlockSize)
		copy(b, macKey)
		for i := range b {
			b[i] ^= x
		}
		return b
	}
	add("HMAC key", slices.Clone(macKey))
	add("HMAC key^ipad", pad(0x36))
	add("HMAC key^opad", pad(0x5c))
	add("AES-256 key", slices.Clone(aesKey))
	// The last round key, in the layout crypto/aes keeps with AES-NI (the
	// first two round keys are the key itself).
	var rks [aesctr.RoundKeysSize]byte
	if err := aesctr.Expand(&rks, (*[32]byte)(aesKey)); err == nil {
		add("AES-256 last round key", slices.Clone(rks[len(rks)-16:]))
	}
	Wipe(rks[:])
	h := sha512.Sum512(ed.Seed())
	h[0] &= 248
	h[31] &= 63
	h[31] |= 64
	add("Ed25519 seed", ed.Seed())
	add("Ed25519 scalar", slices.Clone(h[:32]))
	add("Ed25519 prefix", slices.Clone(h[32:]))
	num := func(name string, b []byte) {
		add(name+" (big-endian)", slices.Clone(b))
		slices.Reverse(b)
		add(name+" (little-endian words)", b)
	}
	d, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Each 16-byte half of d's words too: a 32-byte copy goes through two
	// vector registers, and an asynchronous preemption saves them 64
	// bytes apart in the runtime's save areas (SECURITY.md).
	le := slices.Clone(d)
	slices.Reverse(le)
	add("ECDSA d (little-endian words), low half", slices.Clone(le[:16]))
	add("ECDSA d (little-endian words), high half", le[16:])
	num("ECDSA d", d)
	num("RSA d", rk.D.Bytes())
	num("RSA p", rk.Primes[0].Bytes())
	num("RSA q", rk.Primes[1].Bytes())
	// Each CRT exponent factors the modulus on its own (gcd(2^(e·dP) - 2,
	// N) is p), and qInv is counted with them.
	num("RSA dP", rk.Precomputed.Dp.Bytes())
	num("RSA dQ", rk.Precomputed.Dq.Bytes())
	num("RSA qInv", rk.Precomputed.Qinv.Bytes())
	return forms
}

// keptCopies is how many copies of each form the Signers keep for their
// life, in any build, when signatures come one at a time (one key in each
// pool): crypto/ed25519's cache entry of the one key buffer (seed and
// prefix, never the scalar in its byte form), crypto/ecdsa's of the ECDSA
// pool's key, and the RSA pool's parsed key, whose d, p, q and qInv are
// in math/big's words and in crypto/rsa's FIPS form, and dP and dQ in
// math/big's words and big-endian in the FIPS form. A runtimesecret build
// must leave no other copy of any form.
var keptCopies = map[string]int{
	"Ed25519 seed":                   1,
	"Ed25519 prefix":                 1,
	"ECDSA d (big-endian)":           1,
	"RSA d (little-endian words)":    2,
	"RSA p (little-endian words)":    2,
	"RSA q (little-endian words)":    2,
	"RSA dP (big-endian)":            1,
	"RSA dP (little-endian words)":   1,
	"RSA dQ (big-endian)":            1,
	"RSA dQ (little-endian words)":   1,
	"RSA qInv (little-endian words)": 2,
}

// defaultCopies is how many copies of each form TestAdapterCopies allows
// in a default build: none for what the library computes with (MAC's key
// and pads, NewAEAD's key schedule, the ECDSA pool key's scalar, which
// holds d in math/big's words only while it signs), and for Ed25519 the
// kept ones. The other forms of ECDSA and RSA keys, which crypto/x509,
// crypto/ecdsa and crypto/rsa also copy out of reach when a key is parsed,
// are counted, not bounded; so are the halves of d's words, which the
// runtime's register save areas can hold after a signature was preempted
// (SECURITY.md). In secret mode, which is not preempted asynchronously,
// keptCopies bounds them to none.
var defaultCopies = map[string]int{
	"ECDSA d (little-endian words)": 0,
	"HMAC key":                      0,
	"HMAC key^ipad":                 0,
	"HMAC key^opad":                 0,
	"AES-256 key":                   0,
	"AES-256 last round key":        0,
	"Ed25519 seed":                  1,
	"Ed25519 scalar":                0,
	"Ed25519 prefix":                1,
}

// nonceSample is one in how many of the helper's ECDSA signatures have
// their nonces looked for: the scan's time grows with the patterns.
const nonceSample = 20

// ecdsaNonceForms returns the nonces of every nonceSample-th of the ECDSA
// P-256 signatures sigs (hex, ASN.1), made with ec over the SHA-256 of the
// helper's messages in order, big-endian and in little-endian words: with
// its signature, which is public, a nonce gives the private key,
// d = (s·k - e) / r mod n.
func ecdsaNonceForms(t *testing.T, ec *ecdsa.PrivateKey, sigs []string) []keyForm {
	t.Helper()
	if len(sigs) != copiesOps {
		t.Fatalf("%d ECDSA signatures from the helper, want %d", len(sigs), copiesOps)
	}
	n := ec.Curve.Params().N
	name := fmt.Sprintf("ECDSA nonces, %d signatures", copiesOps/nonceSample)
	be, le := keyForm{name: name + " (big-endian)"}, keyForm{name: name + " (little-endian words)"}
	msg := make([]byte, 64)
	for i, h := range sigs {
		if i%nonceSample != 0 {
			continue
		}
		der, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &sig); err != nil {
			t.Fatal(err)
		}
		binary.BigEndian.PutUint64(msg, uint64(i))
		e := sha256.Sum256(msg)
		//lint:ignore SA1019 the test's own key, to work out the nonces
		k := new(big.Int).Mul(sig.R, ec.D)
		k.Add(k, new(big.Int).SetBytes(e[:]))
		k.Mul(k, new(big.Int).ModInverse(sig.S, n))
		k.Mod(k, n)
		b := k.FillBytes(make([]byte, 32))
		for _, f := range []*keyForm{&be, &le} {
			p, err := memscan.NewPattern(b)
			if err != nil {
				t.Fatal(err)
			}
			f.ps = append(f.ps, p)
			slices.Reverse(b)
		}
	}
	return []keyForm{be, le}
}

// TestAdapterCopies counts the copies of every key form that MAC,
// NewSigner's Sign and ReadPrivateKey leave in a process after copiesOps
// operations of each and a garbage collection, ECDSA signatures' nonces
// included: in every readable mapping
// of the live process outside the Shuffler's own locked, dump-excluded
// ones and MAC's memory, and in a gcore dump. A default build must leave no more than
// defaultCopies and reports the rest; a runtimesecret build must leave
// none but keptCopies. Then the scan is shown to find a copy the program
// keeps, and a busy phase is scanned (busyLimit).
func TestAdapterCopies(t *testing.T) {
	if testing.Short() && !SecretMode() {
		// Secret mode's run in .ci/run passes -short: this test is what
		// that build is checked for.
		t.Skip("runs thousands of signatures in a helper process; skipped in -short mode, except in secret mode")
	}
	if copiesUnderRace {
		t.Skip("too slow under -race; the counts are the same without it")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	macKey, aesKey := make([]byte, 32), make([]byte, 32)
	rand.Read(macKey)
	rand.Read(aesKey)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	hp := startHelper(t, "copies")
	stdin, stdout := hp.stdin, hp.stdout
	stdout.Buffer(nil, 1<<20) // the line of ECDSA signatures
	expect := func(want string) {
		t.Helper()
		hp.expect(t, want)
	}
	send := func(b []byte) {
		binary.Write(stdin, binary.BigEndian, uint32(len(b)))
		stdin.Write(b)
	}
	send(macKey)
	send(aesKey)
	for _, k := range []any{ed, ec, rk} {
		send(pkcs8(t, k))
	}
	forms := keyForms(t, macKey, aesKey, ed, ec, rk)
	start := time.Now()
	if !stdout.Scan() {
		t.Fatal("helper said nothing")
	}
	sigs, ok := strings.CutPrefix(stdout.Text(), "ecdsa ")
	if !ok {
		t.Fatalf("helper said %q, want its ECDSA signatures", stdout.Text())
	}
	forms = append(forms, ecdsaNonceForms(t, ec, strings.Split(sigs, ","))...)
	// ps holds every pattern; form[i] is the form ps[i] belongs to.
	var ps []*memscan.Pattern
	var form []int
	for i, f := range forms {
		ps = append(ps, f.ps...)
		for range f.ps {
			form = append(form, i)
		}
	}
	macLo, macHi := hp.macMemRange(t)
	expect("ready")
	t.Logf("%d MACs, AEAD seals and opens, and signatures with each of 3 keys in %v (secret mode %v)",
		copiesOps, time.Since(start).Round(time.Millisecond), SecretMode())

	live := func() []int {
		t.Helper()
		res := hp.scanLive(t, ps)
		counts := make([]int, len(forms))
		for i, hits := range res {
			for _, h := range hits {
				if !libraryMemory(h, macLo, macHi) {
					counts[form[i]]++
				}
			}
		}
		return counts
	}
	// asm names the functions signal frames interrupted; without it (a
	// binary with no line table), every hit in a dump counts.
	asm, err := loadAesctrAsm(os.Args[0], filepath.Join("internal", "aesctr"))
	if err != nil {
		t.Logf("signal frames in dumps not classified: %v", err)
	}
	core := func() []int {
		t.Helper()
		res, path, ok := hp.scanCore(t, ps)
		if !ok {
			return nil
		}
		defer os.Remove(path)
		c, threads, maps := openCoreThreads(t, path)
		defer c.Close()
		at := asm
		if at != nil {
			if at, err = asm.at(maps); err != nil {
				t.Fatal(err)
			}
		}
		counts := make([]int, len(forms))
		for i, hits := range res {
			for _, h := range hits {
				if at != nil {
					if fr, why, ok := watchedInFlight(c, threads, at, h.Addr); ok {
						t.Logf("%s at %#x not counted: in flight in %v, %s", forms[form[i]].name, h.Addr, fr, why)
						continue
					}
				}
				counts[form[i]]++
			}
		}
		return counts
	}

	// check logs each form's counts and fails those over limit's.
	check := func(phase string, liveCounts, coreCounts []int, limit func(form string) (int, bool)) {
		t.Helper()
		for i, f := range forms {
			c := "not scanned"
			if coreCounts != nil {
				c = strconv.Itoa(coreCounts[i])
			}
			t.Logf("%s%-52s live %4d   core dump %s", phase, f.name, liveCounts[i], c)
			if n, bounded := limit(f.name); bounded && (liveCounts[i] > n || coreCounts != nil && coreCounts[i] > n) {
				t.Errorf("%s%s left behind: live %d, core %s, want at most %d (secret mode %v)", phase, f.name, liveCounts[i], c, n, SecretMode())
			}
		}
	}
	liveCounts, coreCounts := live(), core()
	check("", liveCounts, coreCounts, func(form string) (int, bool) {
		if SecretMode() {
			return keptCopies[form], true
		}
		n, ok := defaultCopies[form]
		return n, ok
	})

	// Control: copies the program keeps are found, by both scans.
	fmt.Fprintln(stdin, "plant")
	expect("planted")
	planted := map[string]bool{"HMAC key": true, "Ed25519 seed": true}
	liveAfter, coreAfter := live(), core()
	for i, f := range forms {
		if !planted[f.name] {
			continue
		}
		if liveAfter[i] <= liveCounts[i] {
			t.Errorf("control: a planted copy of the %s not found in the live process (%d before, %d after)", f.name, liveCounts[i], liveAfter[i])
		}
		if coreAfter != nil && coreAfter[i] <= coreCounts[i] {
			t.Errorf("control: a planted copy of the %s not found in the core dump (%d before, %d after)", f.name, coreCounts[i], coreAfter[i])
		}
	}

	// Busy: a dump taken while the adapters run on several goroutines
	// and the collector runs without pause. What the library controls
	// (MAC's key and pads, and what the Signers keep: Ed25519's one cache
	// entry, the ECDSA and RSA pools' keys) stays bounded in every build
	// (busyLimit); the rest is reported.
	fmt.Fprintln(stdin, "unplant")
	expect("unplanted")
	fmt.Fprintln(stdin, "busy")
	expect("busy")
	busyLive, busyCore := live(), core()
	check("busy: ", busyLive, busyCore, busyLimit)
	hp.wait(t)
}

// busyCopies is how many copies of each form TestAdapterCopies allows in
// its busy phase, in any build: MAC computes in dump-excluded memory of
// its own (see macmem.go),
// and an Ed25519 Signer's seed and prefix are in crypto/ed25519's one
// cache entry and, for the one signature under way (a Signer's Ed25519
// signatures take turns), in the Signer's key buffer and in the frames of
// the call (the cache's check copies the seed to its frame, the signature
// hashes the prefix in a SHA-512 state), which are zeroed when it ends.
// A key buffer per signature left hundreds.
var busyCopies = map[string]int{
	"HMAC key":       0,
	"HMAC key^ipad":  0,
	"HMAC key^opad":  0,
	"Ed25519 seed":   3,
	"Ed25519 scalar": 0,
	"Ed25519 prefix": 3,
}

// busyLimit is busyCopies, for the ECDSA scalar in math/big's words the
// pool keys that sign at the moment (at most GOMAXPROCS, each wiped when
// its signature ends: unwiped, every pool key kept one), and for the ECDSA
// and RSA keys what their pools keep, at most GOMAXPROCS keys each, what the signatures under way
// (as many) hold in their frames until they end, and in a default build
// what crypto/x509 left unwiped when NewSigner and each pool key parsed
// them: for the ECDSA scalar one per key and per signature and 3 (as in
// every run seen); for RSA's d, p, q and qInv two per key as words and one
// per signature, for dP and dQ one per key as words and one per signature,
// and for every RSA number up to 3 per parse big-endian (3 to 6 seen with
// one key) and for dP and dQ the pool's one per key. Runs found at most 6
// and 2 per key. A key or a parse per signature left hundreds.
func busyLimit(form string) (int, bool) {
	procs := runtime.GOMAXPROCS(0)
	switch form {
	case "ECDSA d (little-endian words)":
		return procs, true
	case "ECDSA d (big-endian)":
		return 2*procs + 3, true
	case "RSA d (little-endian words)", "RSA p (little-endian words)", "RSA q (little-endian words)",
		"RSA qInv (little-endian words)":
		return 3*procs + 2, true
	case "RSA dP (little-endian words)", "RSA dQ (little-endian words)":
		return 2*procs + 2, true
	case "RSA d (big-endian)", "RSA p (big-endian)", "RSA q (big-endian)", "RSA qInv (big-endian)",
		"RSA dP (big-endian)", "RSA dQ (big-endian)":
		return 3 * (procs + 1), true
	}
	n, ok := busyCopies[form]
	return n, ok
}

// sealGuarded is the function that holds a seal Guard, and so its signal
// watch, while the code it guards runs; sealCipherGuarded holds one while
// a key is expanded.
const (
	sealGuarded       = "github.com/memshuffle/memshuffle/internal/seal.guarded"
	sealCipherGuarded = "github.com/memshuffle/memshuffle/internal/seal.newCipherGuarded"
)

// watchReach is how far above a thread's stack pointer watching looks for
// the frame of the call that holds a watch: the guarded code reaches at
// most stackscrub.DeepDepth below it.
const watchReach = 64 << 10

// stackEnds holds the functions whose return address is the outermost
// word of a stack: runtime.goexit at the top of every goroutine's stack,
// and where a thread's system stack starts. Stacks lie side by side in
// the runtime's stack spans, so a reach past that word reads another
// goroutine's frames, which may be inside a watch of the same signal stack.
var stackEnds = map[string]bool{
	"runtime.goexit": true,
	"runtime.mstart": true,
	"runtime.clone":  true,
	"runtime.rt0_go": true,
}

// watchedInFlight reports whether the hit at addr in core c lay in the FPU
// state of a signal frame still in flight when the dump was taken, which
// the adapters' signal watch (aesctr.WatchSignals) wipes only when the
// watched call ends: a thread was handling the signal, or had returned from
// it into the function it interrupted and was still there, at the stack
// pointer the frame saved, inside a watch of the signal stack the frame is
// on (the signal stack is wiped at the end of the watch, after that call
// returns), or inside the guarded assembly of internal/aesctr the signal
// interrupted, before its wipe (classifyHit). A frame with no such thread
// was left behind, and its hit counts: one that nothing will wipe (the
// watch off, or a thread back in the same function outside any watch, as
// an idle thread is back in the same system call) as much as one whose
// watch has ended. why says which case held.
func watchedInFlight(c *memscan.Core, threads []memscan.Thread, asm *aesctrAsm, addr uint64) (fr memscan.SignalFrame, why string, ok bool) {
	fr, err := c.SignalFrameAt(addr)
	if err != nil {
		return fr, "", false
	}
	interrupted := asm.funcAt(fr.RIP)
	if th, handling := fr.HandledBy(threads); handling {
		return fr, fmt.Sprintf("thread %d handling it, the signal having interrupted %q", th.TID, interrupted), true
	}
	if v := classifyHit(c, threads, asm, addr); v.inFlight() {
		// internal/aesctr's own guarded assembly, which decrypts entries
		// outside any watch, wipes the frame at its own end.
		return fr, v.String(), true
	}
	for _, th := range threads {
		if interrupted != "" && th.RSP == fr.RSP && asm.funcAt(th.RIP) == interrupted && watching(c, asm, th.RSP, fr.StackHi) {
			return fr, fmt.Sprintf("thread %d back in %q, which the signal interrupted, inside the watch, before its wipe", th.TID, interrupted), true
		}
	}
	return fr, "", false
}

// watching reports whether the stack above rsp holds what a seal Guard
// keeps while the code it guards runs under a watch of the signal stack
// whose top is top: the return address into the function holding the
// Guard, and the watch's top (SignalWatch's one word). A watch that could
// not be used holds 0 there, and one of another thread's signal stack
// that stack's top. It looks no further than the end of the thread's
// stack.
func watching(c *memscan.Core, asm *aesctrAsm, rsp, top uint64) bool {
	var ret, sawTop bool
	var w [8]byte
	for a := rsp; a < rsp+watchReach; a += 8 {
		if c.ReadAt(w[:], a) != nil {
			break
		}
		v := binary.LittleEndian.Uint64(w[:])
		fn := asm.funcAt(v)
		if stackEnds[fn] {
			break
		}
		sawTop = sawTop || v == top
		ret = ret || fn == sealGuarded || fn == sealCipherGuarded
		if ret && sawTop {
			return true
		}
	}
	return false
}

// TestWatchedInFlight runs watchedInFlight on synthetic cores, as
// TestClassifyHit does classifyHit: a frame on a signal stack whose signal
// interrupted one function (watchedInFlight itself, standing in for the
// assembly the adapters watch, or runtime.futex, where idle threads wait),
// and a thread stopped where each case says, its stack holding what a
// Guard watching that signal stack keeps, or not. Only a frame whose
// handler runs, or whose thread is back in the function it interrupted at
// the stack pointer it saved and still inside the watch, is in flight: a
// thread back there with no watch of that stack running (the watch off,
// or an idle thread back in the same wait) stands over a frame nothing
// will wipe.
func TestWatchedInFlight(t *testing.T) {
	asm, err := loadAesctrAsm(os.Args[0], filepath.Join("internal", "aesctr"))
	if err != nil {
		t.Skipf("cannot read the test binary's line table: %v", err)
	}
	watched := asm.tab.LookupFunc("github.com/memshuffle/memshuffle.watchedInFlight")
	waiting, other := asm.tab.LookupFunc("runtime.futex"), asm.tab.LookupFunc("runtime.Gosched")
	if watched == nil || waiting == nil || other == nil {
		t.Fatal("watchedInFlight, runtime.futex or runtime.Gosched not in the line table")
	}
	const (
		sigStack = 0xc000100000
		sigSize  = 32 << 10
		goStack  = 0xc000200000
		frameRSP = goStack + 0x800
		fpSize   = 2696
	)
	guarded, goexit := asm.tab.LookupFunc(sealGuarded), asm.tab.LookupFunc("runtime.goexit")
	if guarded == nil || goexit == nil {
		t.Fatalf("%s or runtime.goexit not in the line table", sealGuarded)
	}
	// What a seal Guard's watch of the signal stack leaves on the
	// goroutine's stack above the watched code: the return address of the
	// call it guards, and the watch's top of that signal stack. A thread
	// may also stand where a watch of another signal stack ran, or where
	// none did.
	const (
		noWatch = iota
		inWatch
		otherStack
		nextStack // a watch above the goroutine's stack, in the next one
	)
	cases := []struct {
		name        string
		interrupted uint64 // where the signal interrupted the thread
		rip         uint64 // where the thread is at the dump
		rsp         func(frame uint64) uint64
		watch       int
		want        bool
	}{
		{"handler on the signal stack", watched.Entry + 1, other.Entry, func(f uint64) uint64 { return f - 0x400 }, noWatch, true},
		{"handler on the signal stack, wait interrupted", waiting.Entry + 1, other.Entry, func(f uint64) uint64 { return f - 0x400 }, noWatch, true},
		{"back in the interrupted function", watched.Entry + 1, watched.Entry + 1, func(uint64) uint64 { return frameRSP }, inWatch, true},
		{"left behind: back in the function, under no watch", watched.Entry + 1, watched.Entry + 1, func(uint64) uint64 { return frameRSP }, noWatch, false},
		{"left behind: back in the function, watching another signal stack", watched.Entry + 1, watched.Entry + 1, func(uint64) uint64 { return frameRSP }, otherStack, false},
		{"left behind: back in the function, a watch on the next stack", watched.Entry + 1, watched.Entry + 1, func(uint64) uint64 { return frameRSP }, nextStack, false},
		{"left behind: in the function, another call's stack", watched.Entry + 1, watched.Entry + 1, func(uint64) uint64 { return frameRSP - 0x100 }, inWatch, false},
		{"left behind: another function at the frame's stack pointer", watched.Entry + 1, other.Entry, func(uint64) uint64 { return frameRSP }, inWatch, false},
		{"left behind: thread above the frame", watched.Entry + 1, other.Entry, func(f uint64) uint64 { return f + 0x100 }, inWatch, false},
		{"left behind: thread waiting where the signal found it", waiting.Entry + 1, waiting.Entry + 1, func(uint64) uint64 { return frameRSP }, noWatch, false},
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var bias uint64
	if asm.pie {
		bias = 0x7f3a_0000_0000
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig := make([]byte, sigSize)
			frame, fx := coretest.PutSignalFrame(sig, sigStack, fpSize, tc.interrupted+bias, frameRSP)
			text := asm.firstLoad + bias
			gs := make([]byte, 4096)
			if tc.watch != noWatch {
				// guarded's frame, above that of the call it guards.
				binary.LittleEndian.PutUint64(gs[frameRSP-goStack+0x200:], guarded.Entry+0x20+bias)
				top := uint64(sigStack + sigSize)
				if tc.watch == otherStack {
					top += 1 << 20
				}
				binary.LittleEndian.PutUint64(gs[frameRSP-goStack+0x240:], top)
			}
			if tc.watch == nextStack {
				binary.LittleEndian.PutUint64(gs[frameRSP-goStack+0x100:], goexit.Entry+1+bias)
			}
			segs := []coretest.Segment{
				{Vaddr: sigStack, Data: sig},
				{Vaddr: goStack, Data: gs},
				{Vaddr: text, Data: make([]byte, 4096)},
			}
			files := []coretest.File{{Start: text, End: text + 4096, Name: exe}}
			c, threads, maps := openSyntheticCore(t, segs, files, []coretest.Thread{
				{TID: 1, RIP: other.Entry + bias, RSP: goStack + 0xf00},
				{TID: 2, RIP: tc.rip + bias, RSP: tc.rsp(frame)},
			})
			defer c.Close()
			placed, err := asm.at(maps)
			if err != nil {
				t.Fatalf("placing the binary: %v", err)
			}
			fr, why, got := watchedInFlight(c, threads, placed, fx+160+16*3)
			if fr.Addr == 0 {
				t.Fatal("no frame found")
			}
			if got != tc.want {
				t.Fatalf("in flight = %v (%s), want %v: %v", got, why, tc.want, fr)
			}
		})
	}
}

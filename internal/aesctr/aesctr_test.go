package aesctr

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"
)

func requireSupported(t testing.TB) {
	t.Helper()
	if !Supported() {
		t.Skip("aesctr: no AES-NI/SSE4.1 assembly on this machine")
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomKey(t testing.TB) (key [32]byte, salt [8]byte) {
	t.Helper()
	rand.Read(key[:])
	rand.Read(salt[:])
	return key, salt
}

func expand(t testing.TB, key *[32]byte) *[RoundKeysSize]byte {
	t.Helper()
	rk := new([RoundKeysSize]byte)
	if err := Expand(rk, key); err != nil {
		t.Fatal(err)
	}
	return rk
}

// blocks is the number of counter values an n-byte input uses.
func blocks(n int) uint64 { return (uint64(n) + 15) / 16 }

// fits reports whether an n-byte input starting at counter value base keeps
// every block's counter value below 2^64, XOR's precondition.
func fits(base uint64, n int) bool {
	nb := blocks(n)
	return nb == 0 || base <= math.MaxUint64-(nb-1)
}

// stdlibXOR is the plain path: crypto/cipher's CTR with the 128-bit initial
// counter block salt || base, which matches XOR as long as the low half does
// not carry.
func stdlibXOR(t testing.TB, key *[32]byte, salt *[8]byte, base uint64, src []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	var iv [16]byte
	copy(iv[:8], salt[:])
	binary.BigEndian.PutUint64(iv[8:], base)
	out := make([]byte, len(src))
	cipher.NewCTR(block, iv[:]).XORKeyStream(out, src)
	return out
}

// TestNISTVector is CTR-AES256.Encrypt from NIST SP 800-38A, F.5.5. Its
// initial counter block f0f1...ff is salt f0f1f2f3f4f5f6f7 followed by the
// counter value f8f9fafbfcfdfeff.
func TestNISTVector(t *testing.T) {
	requireSupported(t)
	var key [32]byte
	copy(key[:], unhex(t, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"))
	var salt [8]byte
	copy(salt[:], unhex(t, "f0f1f2f3f4f5f6f7"))
	const base = 0xf8f9fafbfcfdfeff
	plain := unhex(t, "6bc1bee22e409f96e93d7e117393172a"+"ae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52ef"+"f69f2445df4f9b17ad2b417be66c3710")
	want := unhex(t, "601ec313775789a5b7a7f504bbf3d228"+"f443e3ca4d62b59aca84e990cacaf5c5"+
		"2b0930daa23de94ce87017ba2d84988d"+"dfc9c58db67aada613c2dd08457941a6")
	rk := expand(t, &key)
	var scratch [16]byte

	// Every prefix, so each batch width and partial length is exercised.
	for n := 0; n <= len(plain); n++ {
		got := make([]byte, n)
		XOR(rk, &salt, base, got, plain[:n], &scratch)
		if !bytes.Equal(got, want[:n]) {
			t.Fatalf("n=%d: got %x, want %x", n, got, want[:n])
		}
		// Decryption is the same operation.
		XOR(rk, &salt, base, got, got, &scratch)
		if !bytes.Equal(got, plain[:n]) {
			t.Fatalf("n=%d: decrypted to %x, want %x", n, got, plain[:n])
		}
	}
	// Each block alone, at its own counter value.
	for i := range 4 {
		got := make([]byte, 16)
		XOR(rk, &salt, base+uint64(i), got, plain[16*i:16*i+16], &scratch)
		if !bytes.Equal(got, want[16*i:16*i+16]) {
			t.Errorf("block %d: got %x, want %x", i, got, want[16*i:16*i+16])
		}
	}
}

// The test-only reference key schedule of FIPS-197 section 5.2, written for
// clarity rather than speed. The S-box is derived from its definition
// (inversion in GF(2^8) followed by the affine map) rather than tabulated.

// gfMul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

func sbox(x byte) byte {
	// x^254 is the multiplicative inverse of x, and maps 0 to 0.
	inv := byte(1)
	for range 254 {
		inv = gfMul(inv, x)
	}
	rotl := func(b byte, n uint) byte { return b<<n | b>>(8-n) }
	return inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
}

func referenceExpand(key *[32]byte) [RoundKeysSize]byte {
	const nk, words = 8, RoundKeysSize / 4
	var w [words][4]byte
	for i := range nk {
		copy(w[i][:], key[4*i:])
	}
	rcon := byte(1)
	for i := nk; i < words; i++ {
		t := w[i-1]
		switch i % nk {
		case 0:
			t = [4]byte{sbox(t[1]) ^ rcon, sbox(t[2]), sbox(t[3]), sbox(t[0])}
			rcon = gfMul(rcon, 2)
		case 4:
			t = [4]byte{sbox(t[0]), sbox(t[1]), sbox(t[2]), sbox(t[3])}
		}
		for j := range 4 {
			w[i][j] = w[i-nk][j] ^ t[j]
		}
	}
	var rk [RoundKeysSize]byte
	for i := range words {
		copy(rk[4*i:], w[i][:])
	}
	return rk
}

func TestReferenceSbox(t *testing.T) {
	// Spot values from FIPS-197 Figure 7.
	for _, c := range []struct{ in, out byte }{{0x00, 0x63}, {0x01, 0x7c}, {0x53, 0xed}, {0xff, 0x16}} {
		if got := sbox(c.in); got != c.out {
			t.Errorf("sbox(%#02x) = %#02x, want %#02x", c.in, got, c.out)
		}
	}
}

func TestExpand(t *testing.T) {
	requireSupported(t)
	var nist [32]byte
	copy(nist[:], unhex(t, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"))
	keys := [][32]byte{nist, {}}
	for range 64 {
		k, _ := randomKey(t)
		keys = append(keys, k)
	}
	for _, key := range keys {
		rk := expand(t, &key)
		// AES-256 uses the key itself as its first two round keys.
		if !bytes.Equal(rk[:16], key[:16]) || !bytes.Equal(rk[16:32], key[16:]) {
			t.Fatalf("key %x: first round keys %x, want the key", key, rk[:32])
		}
		want := referenceExpand(&key)
		for r := range RoundKeysSize / 16 {
			if got := rk[16*r : 16*r+16]; !bytes.Equal(got, want[16*r:16*r+16]) {
				t.Errorf("key %x: round key %d = %x, want %x", key, r, got, want[16*r:16*r+16])
			}
		}
	}
	// The last word of FIPS-197 Appendix A.3, which expands the same key.
	rk := expand(t, &nist)
	if got := hex.EncodeToString(rk[RoundKeysSize-4:]); got != "706c631e" {
		t.Errorf("w[59] of the FIPS-197 A.3 key = %s, want 706c631e", got)
	}
}

func TestUnsupported(t *testing.T) {
	if Supported() {
		t.Skip("the assembly is supported here")
	}
	var rk [RoundKeysSize]byte
	key := [32]byte{1}
	if err := Expand(&rk, &key); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Expand: got %v, want an error wrapping errors.ErrUnsupported", err)
	}
	if rk != ([RoundKeysSize]byte{}) {
		t.Error("Expand wrote round keys where it is unsupported")
	}
}

// checkXOR compares XOR with the plain path for one input, out of place and
// in place, and XORInPlace too, and checks that XOR writes nothing outside dst, leaves src alone
// when out of place, and wipes scratch.
func checkXOR(t *testing.T, key *[32]byte, rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, src []byte) {
	t.Helper()
	want := stdlibXOR(t, key, salt, base, src)
	n := len(src)
	srcCopy := bytes.Clone(src)

	// Out of place, with guard bytes on both sides of dst.
	const guard = 32
	buf := bytes.Repeat([]byte{0xa5}, n+2*guard)
	dst := buf[guard : guard+n : guard+n]
	scratch := [16]byte{0: 1, 15: 0xff}
	XOR(rk, salt, base, dst, src, &scratch)
	if !bytes.Equal(dst, want) {
		t.Fatalf("base=%#x n=%d out of place: got %x, want %x", base, n, dst, want)
	}
	for i, b := range append(bytes.Clone(buf[:guard]), buf[guard+n:]...) {
		if b != 0xa5 {
			t.Fatalf("base=%#x n=%d: guard byte %d overwritten", base, n, i)
		}
	}
	if !bytes.Equal(src, srcCopy) {
		t.Fatalf("base=%#x n=%d: src modified", base, n)
	}
	if scratch != ([16]byte{}) {
		t.Fatalf("base=%#x n=%d: scratch not wiped: %x", base, n, scratch)
	}

	// In place.
	inPlace := bytes.Clone(src)
	scratch = [16]byte{7: 0x5a}
	XOR(rk, salt, base, inPlace, inPlace, &scratch)
	if !bytes.Equal(inPlace, want) {
		t.Fatalf("base=%#x n=%d in place: got %x, want %x", base, n, inPlace, want)
	}
	if scratch != ([16]byte{}) {
		t.Fatalf("base=%#x n=%d in place: scratch not wiped: %x", base, n, scratch)
	}

	// XORInPlace, with guard bytes on both sides.
	buf = bytes.Repeat([]byte{0xa5}, n+2*guard)
	copy(buf[guard:], src)
	scratch = [16]byte{3: 0x3c}
	XORInPlace(rk, salt, base, buf[guard:guard+n:guard+n], &scratch)
	if !bytes.Equal(buf[guard:guard+n], want) {
		t.Fatalf("base=%#x n=%d XORInPlace: got %x, want %x", base, n, buf[guard:guard+n], want)
	}
	for i, b := range append(bytes.Clone(buf[:guard]), buf[guard+n:]...) {
		if b != 0xa5 {
			t.Fatalf("base=%#x n=%d XORInPlace: guard byte %d overwritten", base, n, i)
		}
	}
	if scratch != ([16]byte{}) {
		t.Fatalf("base=%#x n=%d XORInPlace: scratch not wiped: %x", base, n, scratch)
	}
}

func TestXORMatchesStdlib(t *testing.T) {
	requireSupported(t)
	lengths := make([]int, 0, 310)
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 4096, 65536+7)
	for _, base := range []uint64{0, 1, math.MaxUint32, math.MaxUint64 - 1000} {
		t.Run(fmt.Sprintf("base=%#x", base), func(t *testing.T) {
			t.Parallel()
			key, salt := randomKey(t)
			rk := expand(t, &key)
			for _, n := range lengths {
				if !fits(base, n) {
					continue // covered at the exact edge by TestXORCounterEdge
				}
				src := make([]byte, n)
				rand.Read(src)
				checkXOR(t, &key, rk, &salt, base, src)
			}
		})
	}
}

// TestXORCounterEdge puts the last block of each input exactly on counter
// value 2^64-1, the largest run XOR accepts.
func TestXORCounterEdge(t *testing.T) {
	requireSupported(t)
	key, salt := randomKey(t)
	rk := expand(t, &key)
	for _, n := range []int{1, 15, 16, 17, 31, 32, 33, 64, 65, 127, 128, 129, 255, 1019, 4096, 65536 + 7} {
		base := math.MaxUint64 - (blocks(n) - 1)
		src := make([]byte, n)
		rand.Read(src)
		checkXOR(t, &key, rk, &salt, base, src)
	}
}

// TestXORSplit checks that encrypting an input in two calls, split at any
// block boundary with the second call continuing the counter, matches one
// call: the batch paths and the 8-block loop produce the same keystream.
func TestXORSplit(t *testing.T) {
	requireSupported(t)
	key, salt := randomKey(t)
	rk := expand(t, &key)
	var scratch [16]byte
	const base = math.MaxUint32 - 5 // crosses a 32-bit boundary midway
	for _, n := range []int{100, 128, 257, 300} {
		src := make([]byte, n)
		rand.Read(src)
		whole := make([]byte, n)
		XOR(rk, &salt, base, whole, src, &scratch)
		for cut := 0; cut <= n; cut += 16 {
			parts := make([]byte, n)
			XOR(rk, &salt, base, parts[:cut], src[:cut], &scratch)
			XOR(rk, &salt, base+uint64(cut/16), parts[cut:], src[cut:], &scratch)
			if !bytes.Equal(parts, whole) {
				t.Fatalf("n=%d cut=%d: split result differs", n, cut)
			}
		}
	}
}

func TestXORPanics(t *testing.T) {
	requireSupported(t)
	key, salt := randomKey(t)
	rk := expand(t, &key)
	var scratch [16]byte
	buf := make([]byte, 64)
	for _, c := range []struct {
		name     string
		dst, src []byte
	}{
		{"shorter dst", buf[:15], buf[16:32]},
		{"longer dst", buf[:33], buf[32:64]},
		{"dst after src", buf[1:33], buf[:32]},
		{"dst before src", buf[:32], buf[8:40]},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("XOR did not panic")
				}
			}()
			XOR(rk, &salt, 0, c.dst, c.src, &scratch)
		})
	}
	t.Run("misaligned round keys", func(t *testing.T) {
		mem := make([]byte, RoundKeysSize+16)
		off := 1
		if uintptr(unsafe.Pointer(&mem[0]))%16 == 15 {
			off = 2
		}
		bad := (*[RoundKeysSize]byte)(mem[off:])
		*bad = *rk
		defer func() {
			if recover() == nil {
				t.Error("XOR did not panic")
			}
		}()
		XOR(bad, &salt, 0, buf[:32], buf[32:], &scratch)
	})
	t.Run("misaligned round keys in place", func(t *testing.T) {
		mem := make([]byte, RoundKeysSize+16)
		off := 1
		if uintptr(unsafe.Pointer(&mem[0]))%16 == 15 {
			off = 2
		}
		bad := (*[RoundKeysSize]byte)(mem[off:])
		*bad = *rk
		defer func() {
			if recover() == nil {
				t.Error("XORInPlace did not panic")
			}
		}()
		XORInPlace(bad, &salt, 0, buf[:32], &scratch)
	})
}

func TestAllocs(t *testing.T) {
	requireSupported(t)
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	key, salt := randomKey(t)
	rk := expand(t, &key)
	var scratch [16]byte
	if n := testing.AllocsPerRun(100, func() {
		if err := Expand(rk, &key); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Expand: %v allocations, want 0", n)
	}
	buf := make([]byte, 1019)
	for _, n := range []int{0, 5, 32, 1019} {
		if a := testing.AllocsPerRun(100, func() {
			XOR(rk, &salt, 42, buf[:n], buf[:n], &scratch)
		}); a != 0 {
			t.Errorf("XOR of %d bytes: %v allocations, want 0", n, a)
		}
		if a := testing.AllocsPerRun(100, func() {
			XORInPlace(rk, &salt, 42, buf[:n], &scratch)
		}); a != 0 {
			t.Errorf("XORInPlace of %d bytes: %v allocations, want 0", n, a)
		}
		if a := testing.AllocsPerRun(100, func() {
			XOR2(rk, &salt, 42, rk, &salt, 7, buf[:n], &scratch)
		}); a != 0 {
			t.Errorf("XOR2 of %d bytes: %v allocations, want 0", n, a)
		}
		if a := testing.AllocsPerRun(100, func() {
			Equal(buf[:n], buf[len(buf)-n:])
		}); a != 0 {
			t.Errorf("Equal of %d bytes: %v allocations, want 0", n, a)
		}
	}
}

// TestXOR2 checks XOR2 against two passes of crypto/cipher's CTR under two
// keys, salts and counter runs, for every length up to 300 (each path of
// its 4-block steps, whole-block tail and partial block), near the end of
// the counter space, and under every guard, with scratch left zero.
func TestXOR2(t *testing.T) {
	requireSupported(t)
	keyA, saltA := randomKey(t)
	keyB, saltB := randomKey(t)
	rkA, rkB := expand(t, &keyA), expand(t, &keyB)
	for name, g := range guardModes(t) {
		withGuard(g, func() {
			for _, bases := range [][2]uint64{{0, 1000}, {77, 3}, {math.MaxUint64 - 20, math.MaxUint64 - 40}} {
				for n := 0; n <= 300; n++ {
					if !fits(bases[0], n) || !fits(bases[1], n) {
						continue
					}
					data := make([]byte, n)
					rand.Read(data)
					want := stdlibXOR(t, &keyB, &saltB, bases[1], stdlibXOR(t, &keyA, &saltA, bases[0], data))
					var scratch [16]byte
					XOR2(rkA, &saltA, bases[0], rkB, &saltB, bases[1], data, &scratch)
					if !bytes.Equal(data, want) {
						t.Fatalf("guard %s: bases %v, n=%d: XOR2 differs from two CTR passes", name, bases, n)
					}
					if scratch != [16]byte{} {
						t.Fatalf("guard %s: n=%d: scratch not wiped", name, n)
					}
				}
			}
		})
	}
}

// fuzzCorpus is the committed seed corpus of FuzzXOR.
const fuzzCorpus = "testdata/fuzz/FuzzXOR"

// TestFuzzCorpus fails if the committed corpus is missing or empty, so that
// `go test` keeps replaying real seeds rather than silently running none.
func TestFuzzCorpus(t *testing.T) {
	entries, err := os.ReadDir(fuzzCorpus)
	if err != nil {
		t.Fatalf("seed corpus: %v", err)
	}
	seeds := 0
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(fuzzCorpus, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "go test fuzz v1\n") {
			t.Errorf("%s is not a go test fuzz v1 file", e.Name())
		}
		seeds++
	}
	if seeds == 0 {
		t.Fatalf("seed corpus %s is empty", fuzzCorpus)
	}
}

// FuzzXOR compares XOR with crypto/cipher's CTR. key and salt are padded or
// truncated to size, and base is pulled back if the input would run past
// counter value 2^64-1, which XOR's contract excludes.
func FuzzXOR(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x11}, 32), []byte("saltsalt"), uint64(0), []byte("hello, world"))
	f.Add(make([]byte, 32), make([]byte, 8), uint64(math.MaxUint64), make([]byte, 16))
	f.Add([]byte("0123456789abcdef0123456789abcdef"), []byte{0xff, 0xfe}, uint64(math.MaxUint32), bytes.Repeat([]byte{0xaa}, 129))
	f.Add([]byte{}, []byte{}, uint64(1<<63), bytes.Repeat([]byte("x"), 1019))
	f.Fuzz(func(t *testing.T, keyIn, saltIn []byte, base uint64, data []byte) {
		requireSupported(t)
		var key [32]byte
		var salt [8]byte
		copy(key[:], keyIn)
		copy(salt[:], saltIn)
		if !fits(base, len(data)) {
			base = math.MaxUint64 - (blocks(len(data)) - 1)
		}
		checkXOR(t, &key, expand(t, &key), &salt, base, data)
	})
}

var benchSizes = []int{16, 32, 64, 128, 1019, 4096, 65536, 1048576}

func BenchmarkXOR(b *testing.B) {
	requireSupported(b)
	key, salt := randomKey(b)
	rk := expand(b, &key)
	var scratch [16]byte
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				XOR(rk, &salt, 1, buf, buf, &scratch)
			}
		})
	}
}

// BenchmarkStdlibCTR is the baseline: what the hot path pays per entry with
// crypto/aes, a fresh cipher.NewCTR (the counter differs per entry) and one
// XORKeyStream, with the block cipher set up once.
func BenchmarkStdlibCTR(b *testing.B) {
	key, salt := randomKey(b)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		b.Fatal(err)
	}
	var iv [16]byte
	copy(iv[:8], salt[:])
	binary.BigEndian.PutUint64(iv[8:], 1)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				cipher.NewCTR(block, iv[:]).XORKeyStream(buf, buf)
			}
		})
	}
}

// guardModes are the guards the differential tests run under: each path of
// GUARDENTER and GUARDEXIT, including the wipe of the signal stack, which a
// threshold of 0 makes every call take.
func guardModes(t testing.TB) map[string]guardChoice {
	t.Helper()
	modes := map[string]guardChoice{"off": {guard: guardOff}}
	if !guardOS {
		return modes
	}
	modes["block"] = guardChoice{guard: guardBlock}
	modes["detect/wipe"] = guardChoice{guard: guardDetect, ticks: 0}
	modes["detect-never"] = guardChoice{guard: guardDetect, ticks: ^uint64(0)}
	if ticks := detectTicks(); ticks != 0 {
		modes["detect"] = guardChoice{guard: guardDetect, ticks: ticks}
	}
	if canaryReady() {
		modes["canary"] = guardChoice{guard: guardCanary, ticks: detectTicks()}
	}
	return modes
}

// withGuard runs f with the guard forced to g and puts the automatic choice
// back. No test of this package that reads the guard runs in parallel with
// a top-level test, so the switch is safe.
func withGuard(g guardChoice, f func()) {
	setForced(&g)
	defer setForced(nil)
	f()
}

// TestGuardModesAgree checks Expand and XOR under every guard against the
// references: the guard only adds code before and after the rounds, and
// every form must produce the same round keys and keystream for every
// length and split point.
func TestGuardModesAgree(t *testing.T) {
	requireSupported(t)
	key, salt := randomKey(t)
	rk := expand(t, &key)
	for name, g := range guardModes(t) {
		withGuard(g, func() {
			rk2 := expand(t, &key)
			if *rk2 != referenceExpand(&key) || *rk2 != *rk {
				t.Fatalf("guard %s: Expand differs from the reference", name)
			}
			for _, base := range []uint64{0, math.MaxUint32 - 3} {
				for n := 0; n <= 300; n++ {
					src := make([]byte, n)
					rand.Read(src)
					checkXOR(t, &key, rk, &salt, base, src)
				}
			}
			checkXOR(t, &key, rk, &salt, math.MaxUint64-(blocks(1019)-1), make([]byte, 1019))
			var scratch [16]byte
			src := make([]byte, 300)
			rand.Read(src)
			whole := make([]byte, len(src))
			XOR(rk, &salt, 9, whole, src, &scratch)
			for cut := 0; cut <= len(src); cut += 16 {
				parts := make([]byte, len(src))
				XOR(rk, &salt, 9, parts[:cut], src[:cut], &scratch)
				XOR(rk, &salt, 9+uint64(cut/16), parts[cut:], src[cut:], &scratch)
				if !bytes.Equal(parts, whole) {
					t.Fatalf("guard %s: cut=%d: split result differs", name, cut)
				}
			}
		})
	}
}

// TestGuardChoice checks which guard each call gets: canaries up to
// canaryMax bytes where their start-up check passed, else detection by the
// time stamp counter up to detectMax bytes where the counter can be
// trusted; blocking above that and for Expand; nothing once a test turns
// the guard off.
func TestGuardChoice(t *testing.T) {
	requireSupported(t)
	if !guardOS {
		for _, n := range []int{0, 32, 1 << 20} {
			if g, _ := guardFor(n); g != guardOff {
				t.Errorf("guardFor(%d) = %d off Linux, want guardOff", n, g)
			}
		}
		for _, name := range []string{"block", "detect", "canary"} {
			if SetSignalGuardForTest(name) {
				t.Errorf("SetSignalGuardForTest(%q) accepted off Linux", name)
			}
		}
		return
	}
	ticks := detectTicks()
	t.Logf("detection threshold: %d ticks (half the fastest getppid round trip); canaries: %v", ticks, canaryReady())
	short, mid := guardDetect, guardBlock
	if ticks == 0 {
		short = guardBlock
	}
	if canaryReady() {
		short, mid = guardCanary, guardCanary
	}
	for _, n := range []int{0, 1, 32, detectMax} {
		g, tk := guardFor(n)
		if g != short {
			t.Errorf("guardFor(%d) = %d, want %d", n, g, short)
		}
		if g != guardBlock && tk != ticks {
			t.Errorf("guardFor(%d) threshold = %d, want %d (the fallback of a canary guard included)", n, tk, ticks)
		}
	}
	for _, n := range []int{detectMax + 1, 1019, canaryMax} {
		if g, tk := guardFor(n); g != mid || tk != 0 {
			t.Errorf("guardFor(%d) = %d, %d, want %d, 0", n, g, tk, mid)
		}
	}
	for _, n := range []int{canaryMax + 1, 65536, 1 << 20} {
		if g, _ := guardFor(n); g != guardBlock {
			t.Errorf("guardFor(%d) = %d, want guardBlock", n, g)
		}
	}
	want := map[string]uint8{"off": guardOff, "block": guardBlock, "detect": guardDetect}
	if ticks == 0 {
		want["detect"] = guardBlock
	}
	if canaryReady() {
		want["canary"] = guardCanary
	} else if SetSignalGuardForTest("canary") {
		t.Error(`SetSignalGuardForTest("canary") accepted where the canaries failed their check`)
	}
	for name, want := range want {
		if !SetSignalGuardForTest(name) {
			t.Fatalf("SetSignalGuardForTest(%q) refused", name)
		}
		g, _ := guardFor(1 << 20)
		SetSignalGuardForTest("auto")
		if g != want {
			t.Errorf("with the guard %s, guardFor(1 MiB) = %d, want %d", name, g, want)
		}
	}
	if SetSignalGuardForTest("sometimes") {
		t.Error("SetSignalGuardForTest accepted an unknown name")
	}
	if g, _ := guardFor(32); g != short {
		t.Errorf("with the guard back on, guardFor(32) = %d, want %d", g, short)
	}
}

// TestGuardWordCache checks the word guardWord reads for short inputs
// against the choice worked out afresh: once stored it must be the answer
// for every length up to detectMax and for none above, a forced guard must
// empty it and win at every length, and the automatic choice must come
// back with "auto".
func TestGuardWordCache(t *testing.T) {
	requireSupported(t)
	defer setForced(nil)
	word := func(g uint8, ticks uint64) uint64 { return ticks<<guardTicksShift | 1<<8 | uint64(g) }
	auto := func(n int) uint64 {
		if !guardOS {
			return word(guardOff, 0)
		}
		return word(pickAutoGuard(n, autoGuards()))
	}
	setForced(nil)
	if atomic.LoadUint64(&shortGuard) != 0 {
		t.Fatal("setForced(nil) left a cached guard")
	}
	lengths := []int{0, 1, 16, 32, detectMax - 1, detectMax, detectMax + 1, 1019, canaryMax, canaryMax + 1, 1 << 20}
	for _, n := range lengths {
		if got, want := guardWord(n), auto(n); got != want {
			t.Errorf("guardWord(%d) = %#x, want %#x", n, got, want)
		}
		if g, ticks := guardFor(n); word(g, ticks) != auto(n) {
			t.Errorf("guardFor(%d) = %d, %d, want the word %#x", n, g, ticks, auto(n))
		}
	}
	if guardOS {
		if got, want := atomic.LoadUint64(&shortGuard), auto(32); got != want {
			t.Errorf("cached guard %#x, want %#x", got, want)
		}
	}
	for _, name := range []string{"off", "block"} {
		if !guardOS {
			break
		}
		if !SetSignalGuardForTest(name) {
			t.Fatalf("SetSignalGuardForTest(%q) refused", name)
		}
		if atomic.LoadUint64(&shortGuard) != 0 {
			t.Errorf("forcing %s left the automatic choice cached", name)
		}
		for _, n := range lengths {
			if got, want := guardWord(n), word(forced.guard, forced.ticks); got != want {
				t.Errorf("forced %s: guardWord(%d) = %#x, want %#x", name, n, got, want)
			}
		}
		if atomic.LoadUint64(&shortGuard) != 0 {
			t.Errorf("forced %s: the forced choice was cached", name)
		}
		SetSignalGuardForTest("auto")
		if got, want := guardWord(32), auto(32); got != want {
			t.Errorf("back to auto after %s: guardWord(32) = %#x, want %#x", name, got, want)
		}
	}
}

// copyLengths covers every path of copyAsm (64-byte, 16-byte and byte
// steps, each alone and together) and of Copy's chunking (copyChunk).
func copyLengths() []int {
	var ns []int
	for n := 0; n <= 200; n++ {
		ns = append(ns, n)
	}
	return append(ns, 4095, copyChunk-1, copyChunk, copyChunk+1, 3*copyChunk+77)
}

func checkCopy(t *testing.T, n, dstLen int) {
	t.Helper()
	src := make([]byte, n)
	rand.Read(src)
	const guard = 16
	buf := bytes.Repeat([]byte{0xa5}, dstLen+2*guard)
	dst := buf[guard : guard+dstLen : guard+dstLen]
	want := min(n, dstLen)
	if got := Copy(dst, src); got != want {
		t.Fatalf("n=%d dst=%d: Copy returned %d, want %d", n, dstLen, got, want)
	}
	if !bytes.Equal(dst[:want], src[:want]) {
		t.Fatalf("n=%d dst=%d: bytes differ", n, dstLen)
	}
	for i, b := range buf {
		if (i < guard || i >= guard+want) && b != 0xa5 {
			t.Fatalf("n=%d dst=%d: byte %d outside the copy overwritten", n, dstLen, i-guard)
		}
	}
}

func TestCopy(t *testing.T) {
	requireSupported(t)
	for _, g := range guardModes(t) {
		withGuard(g, func() {
			for _, n := range copyLengths() {
				checkCopy(t, n, n)
				checkCopy(t, n, n+5)
				if n > 0 {
					checkCopy(t, n, n/2)
				}
			}
		})
	}
}

// TestCopyNoSplitAfterForcedGuard: a test that forces a guard and goes
// back to "auto" leaves CopyNoSplit copying at once, as it does in a
// program after the first New. It used to refuse until some other call
// chose the guard again, and the root package's CopyFrom then took the
// secret from the caller's stack, not the inbox, in whichever test ran
// next.
func TestCopyNoSplitAfterForcedGuard(t *testing.T) {
	requireSupported(t)
	for _, g := range []string{"off", "block", "detect", "canary"} {
		if !SetSignalGuardForTest(g) {
			continue // not on this system
		}
		SetSignalGuardForTest("auto")
		src, dst := []byte("a secret on a stack"), make([]byte, 32)
		if !CopyNoSplit(dst, src) || string(dst[:len(src)]) != string(src) {
			t.Errorf("after %q and back to auto, CopyNoSplit refused or copied %q", g, dst[:len(src)])
		}
	}
}

// TestCopyOverlap checks that overlapping slices, which the assembly does
// not handle, get the built-in copy's result rather than a panic or a
// corrupted copy.
func TestCopyOverlap(t *testing.T) {
	requireSupported(t)
	for _, c := range []struct{ dst, src, n int }{
		{0, 0, 32}, {8, 0, 32}, {0, 8, 32}, {1, 0, 200}, {0, 1, 200}, {32, 0, 32},
	} {
		buf, want := make([]byte, 256), make([]byte, 256)
		rand.Read(buf)
		copy(want, buf)
		copy(want[c.dst:c.dst+c.n], want[c.src:c.src+c.n])
		if got := Copy(buf[c.dst:c.dst+c.n], buf[c.src:c.src+c.n]); got != c.n {
			t.Errorf("Copy(buf[%d:], buf[%d:]) of %d returned %d", c.dst, c.src, c.n, got)
		}
		if !bytes.Equal(buf, want) {
			t.Errorf("Copy(buf[%d:], buf[%d:]) of %d differs from the built-in copy", c.dst, c.src, c.n)
		}
	}
}

// BenchmarkGuard measures what each signal guard costs XOR, Copy and Equal, in one
// run, for the sizes a Rent and a Return of 32 B, of 1019 B (a 1 KiB call)
// and of a 64 KiB entry pass to the assembly. guard=detect is the calibrated
// threshold, which a 64 KiB call always exceeds, so there it includes the
// wipe of the signal stack; guard=detect-never has a threshold no call
// reaches, so its difference to guard=off is the cost of the two time stamp
// counter reads alone.
func BenchmarkGuard(b *testing.B) {
	requireSupported(b)
	key, salt := randomKey(b)
	rk := expand(b, &key)
	var scratch [16]byte
	modes := guardModes(b)
	for _, name := range []string{"off", "detect", "detect-never", "canary", "block"} {
		g, ok := modes[name]
		if !ok {
			continue
		}
		for _, size := range []int{32, 1024, 4096, 65536} {
			buf := make([]byte, size)
			src := make([]byte, size)
			b.Run(fmt.Sprintf("op=xor/guard=%s/size=%d", name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				withGuard(g, func() {
					for b.Loop() {
						XOR(rk, &salt, 1, buf, buf, &scratch)
					}
				})
			})
			b.Run(fmt.Sprintf("op=copy/guard=%s/size=%d", name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				withGuard(g, func() {
					for b.Loop() {
						Copy(buf, src)
					}
				})
			})
			b.Run(fmt.Sprintf("op=equal/guard=%s/size=%d", name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				clear(buf)
				withGuard(g, func() {
					for b.Loop() {
						if !Equal(buf, src) {
							b.Fatal("Equal of equal inputs = false")
						}
					}
				})
			})
		}
	}
}

// BenchmarkBaseline is what Rent+Return of an entry is weighed against, in
// the same units: AES-256-GCM open then seal with a prebuilt AEAD, in place
// (the authenticated alternative to keeping a secret encrypted), and two
// passes of XOR under the automatic guard (the decryption and encryption a
// Rent+Return does, with nothing else).
func BenchmarkBaseline(b *testing.B) {
	requireSupported(b)
	key, salt := randomKey(b)
	rk := expand(b, &key)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	var scratch [16]byte
	for _, size := range []int{32, 1019, 65536} {
		b.Run(fmt.Sprintf("op=gcm-open-seal/size=%d", size), func(b *testing.B) {
			nonce := make([]byte, aead.NonceSize())
			buf := aead.Seal(make([]byte, 0, size+aead.Overhead()), nonce, make([]byte, size), nil)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				plain, err := aead.Open(buf[:0], nonce, buf, nil)
				if err != nil {
					b.Fatal(err)
				}
				buf = aead.Seal(buf[:0], nonce, plain, nil)
			}
		})
		b.Run(fmt.Sprintf("op=aesctr-2pass/size=%d", size), func(b *testing.B) {
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				XOR(rk, &salt, 1, buf, buf, &scratch)
				XOR(rk, &salt, 2, buf, buf, &scratch)
			}
		})
	}
}

// equalLengths covers every path of equalAsm (64-byte, 16-byte and byte
// steps, each alone and together) to 300 bytes, the lengths where the
// automatic guard changes, and Equal's chunking (copyChunk), over three
// chunks and more.
func equalLengths() []int {
	var ns []int
	for n := 0; n <= 300; n++ {
		ns = append(ns, n)
	}
	return append(ns, canaryMax, canaryMax+1, copyChunk-1, copyChunk, copyChunk+1, 3*copyChunk+7)
}

// differAt are the positions of a difference tried for an n-byte input:
// every one up to 300 bytes; else both ends, the middle and either side of
// the first and the last chunk boundary.
func differAt(n int) []int {
	if n <= 300 {
		ps := make([]int, n)
		for i := range ps {
			ps[i] = i
		}
		return ps
	}
	ps := []int{0, 1, n / 2, n - 2, n - 1}
	if n > copyChunk {
		last := (n - 1) / copyChunk * copyChunk
		ps = append(ps, copyChunk-1, copyChunk, last-1, last)
	}
	return ps
}

// TestEqual checks Equal against crypto/subtle.ConstantTimeCompare under
// every guard: for equal inputs, for a difference of one bit and of a whole
// byte at each position differAt gives, and for inputs of different
// lengths. The inputs are followed in memory by bytes that differ, so a
// comparison that read past the end would answer false for equal inputs.
func TestEqual(t *testing.T) {
	requireSupported(t)
	// A difference of one bit, which bit turning with the position, so
	// that every bit of every lane of the accumulators is tried; and of
	// every bit of a byte.
	changes := []struct {
		name  string
		apply func(b []byte, i int) // its own inverse
	}{
		{"bit", func(b []byte, i int) { b[i] ^= 1 << (i % 8) }},
		{"byte", func(b []byte, i int) { b[i] = ^b[i] }},
	}
	// The guards are the inner loop, so that the reference, which is slow
	// under the race detector, runs once per input.
	modes := guardModes(t)
	defer setForced(nil)
	for _, n := range equalLengths() {
		bufA, bufB := make([]byte, n+64), make([]byte, n+64)
		rand.Read(bufA)
		copy(bufB, bufA[:n])
		rand.Read(bufB[n:])
		bufB[n] = ^bufA[n]
		a, b := bufA[:n], bufB[:n]
		check := func(what string, at int) {
			t.Helper()
			want := subtle.ConstantTimeCompare(a, b) == 1
			for name, g := range modes {
				setForced(&g)
				if got, swapped := Equal(a, b), Equal(b, a); got != want || swapped != want {
					t.Fatalf("guard %s: n=%d: %s %d: Equal = %v, with the arguments swapped %v, ConstantTimeCompare = %v", name, n, what, at, got, swapped, want)
				}
			}
		}
		check("equal", 0)
		for _, c := range changes {
			for _, i := range differAt(n) {
				c.apply(b, i)
				check(c.name+" differs at", i)
				c.apply(b, i) // undone
			}
		}
		b = a
		check("the same slice", 0)
		if n > 0 {
			b = bufB[:n-1]
			check("one byte shorter", 0)
			b = bufA[:n-1]
			check("a prefix of itself", 0)
		}
		b = bufB[:n+1]
		check("one byte longer", 0)
	}
	for _, c := range []struct {
		a, b []byte
		want bool
	}{
		{nil, nil, true},
		{nil, []byte{}, true},
		{[]byte{}, nil, true},
		{nil, []byte{0}, false},
		{[]byte{0}, nil, false},
	} {
		if got := Equal(c.a, c.b); got != c.want || got != (subtle.ConstantTimeCompare(c.a, c.b) == 1) {
			t.Errorf("Equal(%#v, %#v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestEqualOverlap checks that a and b may share memory: Equal only reads.
func TestEqualOverlap(t *testing.T) {
	requireSupported(t)
	buf := make([]byte, 300)
	for i := range buf {
		buf[i] = byte(i % 7)
	}
	// buf[7:] and buf[:len-7] overlap and hold the same bytes; buf[1:] and
	// buf[:len-1] overlap and do not.
	if !Equal(buf[7:], buf[:len(buf)-7]) {
		t.Error("Equal of overlapping equal slices = false")
	}
	if Equal(buf[1:], buf[:len(buf)-1]) {
		t.Error("Equal of overlapping different slices = true")
	}
}

// equalBenchSizes are the sizes of BenchmarkEqual and its baseline.
var equalBenchSizes = []int{32, 1019, 4096, 65536}

// BenchmarkEqual is Equal of two equal inputs (the comparison's cost does
// not depend on where they differ) under the automatic guard.
func BenchmarkEqual(b *testing.B) {
	requireSupported(b)
	benchEqual(b, Equal)
}

// BenchmarkConstantTimeCompare is the baseline of BenchmarkEqual:
// crypto/subtle's comparison of the same inputs.
func BenchmarkConstantTimeCompare(b *testing.B) {
	benchEqual(b, func(x, y []byte) bool { return subtle.ConstantTimeCompare(x, y) == 1 })
}

// benchEqual runs equal on two equal inputs of each of equalBenchSizes.
func benchEqual(b *testing.B, equal func(x, y []byte) bool) {
	for _, size := range equalBenchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			x, y := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if !equal(x, y) {
					b.Fatal("equal inputs compared unequal")
				}
			}
		})
	}
}

package ctr

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNISTVector is CTR-AES256.Encrypt from NIST SP 800-38A, F.5.5. Its
// initial counter block f0f1...ff is salt f0f1f2f3f4f5f6f7 followed by the
// counter value f8f9fafbfcfdfeff, exactly our construction.
func TestNISTVector(t *testing.T) { bothPaths(t, testNISTVector) }

func testNISTVector(t *testing.T) {
	var key [32]byte
	copy(key[:], unhex(t, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"))
	var salt [8]byte
	copy(salt[:], unhex(t, "f0f1f2f3f4f5f6f7"))
	base := binary.BigEndian.Uint64(unhex(t, "f8f9fafbfcfdfeff"))
	plain := unhex(t, "6bc1bee22e409f96e93d7e117393172a"+"ae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52ef"+"f69f2445df4f9b17ad2b417be66c3710")
	want := unhex(t, "601ec313775789a5b7a7f504bbf3d228"+"f443e3ca4d62b59aca84e990cacaf5c5"+
		"2b0930daa23de94ce87017ba2d84988d"+"dfc9c58db67aada613c2dd08457941a6")
	c, err := New(&key, &salt, new([StateSize]byte))
	if err != nil {
		t.Fatal(err)
	}
	var scratch [ScratchSize]byte
	for n := 1; n <= len(plain); n++ {
		got := make([]byte, n)
		c.XOR(got, plain[:n], base, &scratch)
		if !bytes.Equal(got, want[:n]) {
			t.Fatalf("n=%d: got %x, want %x", n, got, want[:n])
		}
	}
	// Each block alone, at its own counter value.
	for i := 0; i < 4; i++ {
		got := make([]byte, 16)
		c.XOR(got, plain[16*i:16*i+16], base+uint64(i), &scratch)
		if !bytes.Equal(got, want[16*i:16*i+16]) {
			t.Fatalf("block %d: got %x", i, got)
		}
	}
	if scratch != ([ScratchSize]byte{}) {
		t.Fatal("keystream left in scratch")
	}
}

// TestPathsAgree checks the block-by-block path against the standard
// library's CTR at every length across the switch-over, at counter values
// up to the top of the 64-bit space, and in place as well as out of place.
func TestPathsAgree(t *testing.T) { bothPaths(t, testPathsAgree) }

func testPathsAgree(t *testing.T) {
	var key [32]byte
	var salt [8]byte
	for i := range key {
		key[i] = byte(i * 7)
	}
	copy(salt[:], "saltsalt")
	c, _ := New(&key, &salt, new([StateSize]byte))
	blk, _ := aes.NewCipher(key[:])
	src := make([]byte, 3*ScratchSize+5)
	for i := range src {
		src[i] = byte(i)
	}
	var scratch [ScratchSize]byte
	for _, base := range []uint64{0, 1, 1 << 32, math.MaxUint64 - 1<<10} {
		for n := 0; n <= len(src); n++ {
			var iv [16]byte
			copy(iv[:8], salt[:])
			binary.BigEndian.PutUint64(iv[8:], base)
			want := make([]byte, n)
			cipher.NewCTR(blk, iv[:]).XORKeyStream(want, src[:n])
			got := make([]byte, n)
			c.XOR(got, src[:n], base, &scratch)
			if !bytes.Equal(got, want) {
				t.Fatalf("base=%d n=%d: out-of-place mismatch", base, n)
			}
			inPlace := bytes.Clone(src[:n])
			c.XOR(inPlace, inPlace, base, &scratch)
			if !bytes.Equal(inPlace, want) {
				t.Fatalf("base=%d n=%d: in-place mismatch", base, n)
			}
		}
	}
}

func TestRekey(t *testing.T) { bothPaths(t, testRekey) }

func testRekey(t *testing.T) {
	var k1, k2 [32]byte
	var s1, s2 [8]byte
	k1[0], k2[0], s2[0] = 1, 2, 3
	c1, _ := New(&k1, &s1, new([StateSize]byte))
	c2, _ := New(&k2, &s2, new([StateSize]byte))
	checkRekey(t, c1, c2)
}

// checkRekey checks Rekey from c1 to c2 against a fresh encryption by c2,
// at lengths around every block, step and chunk boundary, and that it
// leaves scratch zero.
func checkRekey(t *testing.T, c1, c2 *Cipher) {
	t.Helper()
	var scratch [ScratchSize]byte
	for _, n := range []int{1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 10000, asmChunk, asmChunk + 17, 3*asmChunk + 5} {
		plain := bytes.Repeat([]byte{0x5a}, n)
		data := make([]byte, n)
		c1.XOR(data, plain, 100, &scratch)
		Rekey(data, c1, 100, c2, 5000, &scratch)
		if scratch != [ScratchSize]byte{} {
			t.Fatalf("n=%d: Rekey left scratch non-zero", n)
		}
		want := make([]byte, n)
		c2.XOR(want, plain, 5000, &scratch)
		if !bytes.Equal(data, want) {
			t.Fatalf("n=%d: rekeyed ciphertext differs from a fresh encryption", n)
		}
	}
}

// TestRekeyBulk: RekeyBulk followed by Rekey of the rest gives a fresh
// encryption by the new Cipher, at lengths around its unit and the
// assembly's chunks; on the fallback it leaves everything to Rekey.
func TestRekeyBulk(t *testing.T) {
	var k1, k2 [32]byte
	var s1, s2 [8]byte
	k1[0], k2[0], s2[0] = 4, 5, 6
	for _, fallback := range []bool{false, true} {
		forceFallback = fallback
		c1, _ := New(&k1, &s1, new([StateSize]byte))
		c2, _ := New(&k2, &s2, new([StateSize]byte))
		forceFallback = false
		var scratch [ScratchSize]byte
		for _, n := range []int{0, 5, BulkUnit - 1, BulkUnit, BulkUnit + 3, asmChunk + 3*BulkUnit + 9, 3*asmChunk + 5} {
			plain := bytes.Repeat([]byte{0xa5}, n)
			data := make([]byte, n)
			c1.XOR(data, plain, 300, &scratch)
			done := RekeyBulk(data, c1, 300, c2, 9000)
			want := n &^ (BulkUnit - 1)
			if fallback || !aesctr.Supported() {
				want = 0
			}
			if done != want {
				t.Fatalf("fallback=%v n=%d: RekeyBulk did %d bytes, want %d", fallback, n, done, want)
			}
			blk := uint64(done / BlockSize)
			Rekey(data[done:], c1, 300+blk, c2, 9000+blk, &scratch)
			fresh := make([]byte, n)
			c2.XOR(fresh, plain, 9000, &scratch)
			if !bytes.Equal(data, fresh) {
				t.Fatalf("fallback=%v n=%d: RekeyBulk+Rekey differs from a fresh encryption", fallback, n)
			}
		}
	}
}

// TestRekeyMixed rekeys between a Cipher on the assembly and one on the
// crypto/aes fallback, both ways.
func TestRekeyMixed(t *testing.T) {
	if !aesctr.Supported() {
		t.Skip("no assembly path on this CPU")
	}
	var k1, k2 [32]byte
	var s1, s2 [8]byte
	k1[0], k2[0], s2[0] = 1, 2, 3
	asm, _ := New(&k1, &s1, new([StateSize]byte))
	forceFallback = true
	plain, _ := New(&k2, &s2, new([StateSize]byte))
	forceFallback = false
	checkRekey(t, asm, plain)
	checkRekey(t, plain, asm)
}

// TestRekeyAllocs checks that Rekey allocates nothing on either path: its
// working memory is the caller's scratch (and, with the assembly, the
// registers), so no keystream is ever copied to the heap.
func TestRekeyAllocs(t *testing.T) { bothPaths(t, testRekeyAllocs) }

func testRekeyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	var k1, k2 [32]byte
	var s1, s2 [8]byte
	c1, _ := New(&k1, &s1, new([StateSize]byte))
	c2, _ := New(&k2, &s2, new([StateSize]byte))
	scratch := new([ScratchSize]byte)
	data := make([]byte, 10000)
	for _, n := range []int{32, 1019, 10000} {
		if a := testing.AllocsPerRun(20, func() {
			Rekey(data[:n], c1, 100, c2, 5000, scratch)
		}); a != 0 {
			t.Errorf("Rekey of %d bytes: %v allocations, want 0", n, a)
		}
	}
}

// BenchmarkRekey is the re-encryption of one entry in a key rotation.
func BenchmarkRekey(b *testing.B) {
	var k1, k2 [32]byte
	var s1, s2 [8]byte
	c1, _ := New(&k1, &s1, new([StateSize]byte))
	c2, _ := New(&k2, &s2, new([StateSize]byte))
	scratch := new([ScratchSize]byte)
	for _, size := range []int{32, 1019, 65536} {
		b.Run("size="+itoa(size), func(b *testing.B) {
			data := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				Rekey(data, c1, 100, c2, 5000, scratch)
			}
		})
	}
}

func TestAllocator(t *testing.T) {
	a := NewAllocator(10)
	b1, _ := a.Reserve(5)
	b2, _ := a.Reserve(1)
	if b1 != 10 || b2 != 15 || a.Next() != 16 {
		t.Fatalf("got %d %d %d", b1, b2, a.Next())
	}
	top := NewAllocator(math.MaxUint64 - 3)
	if _, err := top.Reserve(3); err != nil {
		t.Fatal(err)
	}
	if _, err := top.Reserve(1); !errors.Is(err, ErrExhausted) {
		t.Fatalf("reserve past 2^64: %v", err)
	}
	if top.Next() != math.MaxUint64 {
		t.Fatal("failed reserve moved the counter")
	}
	// Concurrent reservations never overlap.
	c := NewAllocator(0)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				b, _ := c.Reserve(3)
				mu.Lock()
				for i := b; i < b+3; i++ {
					if seen[i] {
						t.Errorf("counter value %d handed out twice", i)
					}
					seen[i] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestBlocks(t *testing.T) {
	for n, want := range map[int]uint64{0: 0, 1: 1, 16: 1, 17: 2, 32: 2, 1019: 64} {
		if got := Blocks(n); got != want {
			t.Errorf("Blocks(%d) = %d, want %d", n, got, want)
		}
	}
}

func BenchmarkXOR(b *testing.B) {
	var key [32]byte
	var salt [8]byte
	c, _ := New(&key, &salt, new([StateSize]byte))
	var scratch [ScratchSize]byte
	for _, n := range []int{16, 32, 64, 128, 256, 1019, 4096} {
		b.Run("size="+itoa(n), func(b *testing.B) {
			buf := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				c.XOR(buf, buf, 1, &scratch)
			}
		})
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// bothPaths runs f on the assembly path (where the CPU has it) and on the
// crypto/aes fallback.
func bothPaths(t *testing.T, f func(*testing.T)) {
	t.Run("default", f)
	t.Run("fallback", func(t *testing.T) {
		forceFallback = true
		defer func() { forceFallback = false }()
		f(t)
	})
}

func TestOffHeap(t *testing.T) {
	var key [32]byte
	var salt [8]byte
	st := new([StateSize]byte)
	c, err := New(&key, &salt, st)
	if err != nil {
		t.Fatal(err)
	}
	if c.OffHeap() != aesctr.Supported() {
		t.Fatalf("OffHeap %v, aesctr.Supported %v", c.OffHeap(), aesctr.Supported())
	}
	if c.OffHeap() {
		if *st == ([StateSize]byte{}) {
			t.Fatal("round keys not in the state buffer")
		}
		c.Wipe()
		if *st != ([StateSize]byte{}) {
			t.Fatal("Wipe left round keys")
		}
	}
}

// TestChunks checks XOR against crypto/cipher across the boundaries of the
// assembly's pieces (asmChunk), where one call becomes several.
func TestChunks(t *testing.T) {
	var key [32]byte
	var salt [8]byte
	key[3], salt[5] = 9, 4
	c, _ := New(&key, &salt, new([StateSize]byte))
	blk, _ := aes.NewCipher(key[:])
	var scratch [ScratchSize]byte
	for _, n := range []int{asmChunk - 1, asmChunk, asmChunk + 1, 3*asmChunk + 5} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i * 13)
		}
		var iv [16]byte
		copy(iv[:8], salt[:])
		binary.BigEndian.PutUint64(iv[8:], 77)
		want := make([]byte, n)
		cipher.NewCTR(blk, iv[:]).XORKeyStream(want, src)
		c.XOR(src, src, 77, &scratch)
		if !bytes.Equal(src, want) {
			t.Fatalf("n=%d: XOR differs from crypto/cipher", n)
		}
	}
}

// TestXORBulk checks XORBulk followed by XOR of the rest against
// crypto/cipher's CTR on the assembly and the fallback, at lengths around
// its unit and the assembly's chunks: it must take exactly the whole units
// and no byte past them, in or out of place.
func TestXORBulk(t *testing.T) {
	var key [32]byte
	var salt [8]byte
	key[7], salt[2] = 5, 6
	blk, _ := aes.NewCipher(key[:])
	for _, fallback := range []bool{false, true} {
		forceFallback = fallback
		c, err := New(&key, &salt, new([StateSize]byte))
		forceFallback = false
		if err != nil {
			t.Fatal(err)
		}
		var scratch [ScratchSize]byte
		for _, n := range []int{0, 1, BulkUnit - 1, BulkUnit, BulkUnit + 1, 16 << 10, asmChunk + 3*BulkUnit + 9, 3*asmChunk + 5} {
			for _, inPlace := range []bool{true, false} {
				src := make([]byte, n)
				for i := range src {
					src[i] = byte(i*7 + 1)
				}
				var iv [16]byte
				copy(iv[:8], salt[:])
				binary.BigEndian.PutUint64(iv[8:], 1234)
				want := make([]byte, n)
				cipher.NewCTR(blk, iv[:]).XORKeyStream(want, src)
				dst := src
				if !inPlace {
					dst = make([]byte, n)
				}
				done := c.XORBulk(dst, src, 1234)
				if done != n&^(BulkUnit-1) {
					t.Fatalf("fallback=%v n=%d: XORBulk did %d bytes, want %d", fallback, n, done, n&^(BulkUnit-1))
				}
				if !inPlace && !bytes.Equal(dst[done:], make([]byte, n-done)) {
					t.Fatalf("fallback=%v n=%d: XORBulk wrote past its %d bytes", fallback, n, done)
				}
				c.XOR(dst[done:], src[done:], 1234+uint64(done/BlockSize), &scratch)
				if !bytes.Equal(dst, want) {
					t.Fatalf("fallback=%v n=%d inPlace=%v: XORBulk+XOR differs from crypto/cipher", fallback, n, inPlace)
				}
			}
		}
	}
}

// objectBytes is the memory of the object the pointer in v refers to.
func objectBytes(v any) []byte {
	p := reflect.ValueOf(v)
	return unsafe.Slice((*byte)(p.UnsafePointer()), p.Type().Elem().Size())
}

// TestWipeFallback: on the crypto/aes fallback the round keys are in the
// Block on the Go heap (the first two of them are the key), or on s390x in
// memory the Block refers to (Reach): the key itself with CPACF, the
// schedule without; Wipe must clear them there. It runs again in a process
// with AES-NI hidden from the runtime, where crypto/aes builds its schedule
// in Go, as on 386 and on every CPU without AES instructions: that schedule
// holds the key as 32-bit words in the machine's byte order, which the
// check must find too.
func TestWipeFallback(t *testing.T) {
	forceFallback = true
	defer func() { forceFallback = false }()
	key := [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
	var salt [8]byte
	c, err := New(&key, &salt, new([StateSize]byte))
	if err != nil {
		t.Fatal(err)
	}
	mem := Reach(c.block)
	if !slices.ContainsFunc(mem, func(m []byte) bool { return holdsKey(m, &key) }) {
		t.Fatal("the key is not in the Block or what it refers to: the check looks in the wrong place")
	}
	c.Wipe()
	for _, m := range mem {
		if !bytes.Equal(m, make([]byte, len(m))) {
			t.Fatal("Wipe left the Block's round keys")
		}
	}
	if os.Getenv(noAESNIEnv) != "" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), noAESNIEnv+"=1", "GODEBUG=cpu.aes=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("with AES-NI hidden: %v\n%s", err, out)
	}
}

// noAESNIEnv marks the process TestWipeFallback starts with AES-NI hidden.
const noAESNIEnv = "MEMSHUFFLE_TEST_NOAESNI"

// holdsKey reports whether obj holds the AES-256 key as the first two round
// keys: byte for byte, as the assembly expands it, or as 32-bit big-endian
// words stored in the machine's byte order, as crypto/aes's Go code does.
func holdsKey(obj []byte, key *[32]byte) bool {
	if bytes.Contains(obj, key[:]) {
		return true
	}
	var words [32]byte
	for i := 0; i < len(key); i += 4 {
		binary.NativeEndian.PutUint32(words[i:], binary.BigEndian.Uint32(key[i:]))
	}
	return bytes.Contains(obj, words[:])
}

// TestWipeObject: a non-nil pointer's object is zeroed; anything else is
// left alone, without a panic.
func TestWipeObject(t *testing.T) {
	p := &[4]byte{1, 2, 3, 4}
	WipeObject(p)
	if *p != ([4]byte{}) {
		t.Fatal("not zeroed")
	}
	var nilPtr *[4]byte
	for _, v := range []any{nil, 3, "s", nilPtr, [2]int{1, 2}} {
		WipeObject(v)
	}
}

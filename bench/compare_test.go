package bench

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/awnumar/memguard"
	"github.com/memshuffle/memshuffle"
)

// sizes are the entry sizes of every comparison, the same as the core
// module's BenchmarkRentReturn: two small secrets, an odd size that fills no
// block evenly, a page, and two sizes where throughput dominates.
var sizes = []int{16, 32, 1019, 4096, 65536, 1 << 20}

// A workload is one library's version of "get access to a secret of size
// bytes, then give it back protected again". setup runs outside the timer
// and returns the operation the benchmark times; op must leave the secret
// in the state setup left it in, so it can run any number of times.
type workload struct {
	lib   string
	setup func(tb testing.TB, size int) (op func() error)
}

// workloads are in the order benchstat shows them as columns; memshuffle
// first, so the deltas benchstat prints are relative to it.
var workloads = []workload{
	{"memshuffle", setupMemshuffle},
	{"memguard-enclave", setupMemguardEnclave},
	{"memguard-buffer", setupMemguardBuffer},
	{"memguard-open-modify-seal", setupMemguardOpenModifySeal},
	{"heap", setupHeap},
	{"aes-ctr-x2", setupAESCTRx2},
	{"copy", setupCopy},
}

// setupMemshuffle times RentSlice + Return of one entry, the same operation
// as the core module's BenchmarkRentReturn, here built with the same
// compiler flags and in the same process as its competitors.
func setupMemshuffle(tb testing.TB, size int) func() error {
	s, err := memshuffle.New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	h, err := memshuffle.Alloc[byte](s, size)
	if err != nil {
		tb.Fatal(err)
	}
	return func() error {
		if _, err := memshuffle.RentSlice[byte](s, h); err != nil {
			return err
		}
		return s.Return(h)
	}
}

// newEnclave seals size zero bytes into a memguard Enclave.
func newEnclave(tb testing.TB, size int) *memguard.Enclave {
	e := memguard.NewEnclave(make([]byte, size))
	if e == nil {
		tb.Fatalf("memguard.NewEnclave(%d) returned nil", size)
	}
	return e
}

// setupMemguardEnclave times Enclave.Open + Destroy of the LockedBuffer it
// returns: memguard's way to use a sealed secret. Open maps, locks and
// guards a fresh buffer and decrypts into it; Destroy wipes and unmaps it.
func setupMemguardEnclave(tb testing.TB, size int) func() error {
	e := newEnclave(tb, size)
	return func() error {
		lb, err := e.Open()
		if err != nil {
			return err
		}
		lb.Destroy()
		return nil
	}
}

// setupMemguardBuffer times NewBuffer + Destroy: the cost of memguard's
// protected memory alone, without any encryption.
func setupMemguardBuffer(tb testing.TB, size int) func() error {
	return func() error {
		lb := memguard.NewBuffer(size)
		if lb.Size() != size {
			return fmt.Errorf("memguard.NewBuffer(%d) returned %d bytes", size, lb.Size())
		}
		lb.Destroy()
		return nil
	}
}

// setupMemguardOpenModifySeal times a change to a sealed secret: Open,
// Melt (Open returns the buffer read-only), change one byte, and Seal it
// into a new Enclave, which also destroys the buffer.
func setupMemguardOpenModifySeal(tb testing.TB, size int) func() error {
	e := newEnclave(tb, size)
	return func() error {
		lb, err := e.Open()
		if err != nil {
			return err
		}
		lb.Melt()
		lb.Bytes()[0] ^= 1
		e = lb.Seal()
		if e == nil {
			return errors.New("memguard: Seal returned nil")
		}
		return nil
	}
}

// setupHeap reads and writes each byte of a plain []byte once, eight bytes
// at a time: what using an unprotected secret costs at the least.
func setupHeap(tb testing.TB, size int) func() error {
	buf := make([]byte, size)
	return func() error {
		touch(buf)
		return nil
	}
}

// touch XORs every byte of p with 0x5a, a word at a time (the compiler turns
// the binary.LittleEndian calls into single loads and stores).
func touch(p []byte) {
	const mask = 0x5a5a5a5a5a5a5a5a
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^mask)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= 0x5a
	}
}

// setupAESCTRx2 runs two AES-256-CTR passes over the bytes with stock
// crypto/cipher, a fresh stream each (setup included), the same as two
// runs of the core module's BenchmarkBaselineCTR: the floor of any scheme
// that decrypts on rent and encrypts on return.
func setupAESCTRx2(tb testing.TB, size int) func() error {
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		tb.Fatal(err)
	}
	iv := make([]byte, aes.BlockSize)
	buf := make([]byte, size)
	return func() error {
		ctrTwice(blk, iv, buf)
		return nil
	}
}

// ctrTwice encrypts p in place twice under one key and IV, which gives p
// back: the benchmark's bytes stay as they were however often it runs.
func ctrTwice(blk cipher.Block, iv, p []byte) {
	cipher.NewCTR(blk, iv).XORKeyStream(p, p)
	cipher.NewCTR(blk, iv).XORKeyStream(p, p)
}

// setupCopy copies the bytes once: the floor of moving an entry.
func setupCopy(tb testing.TB, size int) func() error {
	src, dst := make([]byte, size), make([]byte, size)
	return func() error {
		copy(dst, src)
		return nil
	}
}

// BenchmarkRentReturn runs every workload at every size, named
// lib=<library>/size=<bytes> so that `benchstat -col /lib` puts the
// libraries side by side.
func BenchmarkRentReturn(b *testing.B) {
	for _, w := range workloads {
		for _, size := range sizes {
			b.Run("lib="+w.lib+"/size="+strconv.Itoa(size), func(b *testing.B) {
				op := w.setup(b, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := op(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestWorkloads runs each workload a few times at each small size, so a
// broken setup fails `go test` instead of producing a meaningless number.
func TestWorkloads(t *testing.T) {
	for _, w := range workloads {
		for _, size := range []int{16, 32, 1019} {
			t.Run("lib="+w.lib+"/size="+strconv.Itoa(size), func(t *testing.T) {
				op := w.setup(t, size)
				for range 3 {
					if err := op(); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// TestOpenModifySealChanges checks that the open-modify-seal workload really
// changes the sealed secret, i.e. that it measures a write.
func TestOpenModifySealChanges(t *testing.T) {
	e := memguard.NewEnclave(make([]byte, 32))
	lb, err := e.Open()
	if err != nil {
		t.Fatal(err)
	}
	lb.Melt()
	lb.Bytes()[0] ^= 1
	e = lb.Seal()
	lb, err = e.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Destroy()
	if got := lb.Bytes()[0]; got != 1 {
		t.Fatalf("first byte after open-modify-seal = %d, want 1", got)
	}
}

// TestTouchAndCTRx2 checks the two floors: touch writes every byte, and two
// CTR passes under one key and IV give the input back.
func TestTouchAndCTRx2(t *testing.T) {
	for _, size := range []int{0, 1, 7, 8, 9, 1019} {
		p := make([]byte, size)
		touch(p)
		if !bytes.Equal(p, bytes.Repeat([]byte{0x5a}, size)) {
			t.Fatalf("touch of %d zero bytes = %x", size, p)
		}
	}
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	p := []byte("sixty-four bytes of a secret that must come back unchanged......")
	want := bytes.Clone(p)
	ctrTwice(blk, make([]byte, aes.BlockSize), p)
	if !bytes.Equal(p, want) {
		t.Fatalf("two CTR passes changed the bytes: %q", p)
	}
}

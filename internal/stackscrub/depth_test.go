package stackscrub

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"testing"
	"unsafe"

	"golang.org/x/crypto/chacha20poly1305"
)

// span is how far below its caller's frame depthOf looks.
const span = 32 << 10

// paint fills its frame, span bytes just below its caller's, with 0xa5:
// its prologue first grows the stack to hold it.
//
//go:noinline
func paint() {
	var b [span]byte
	for i := range b {
		b[i] = 0xa5
	}
	keepPaint(&b)
}

//go:noinline
func keepPaint(*[span]byte) {}

// depthOf returns how far below its frame op's calls wrote: paint marks
// the stack there first, and depthOf looks for the deepest byte op
// changed. It only reads below its frame, where paint's frame was: the
// stack reaches that far, as long as no collection shrinks it (the
// caller's concern). A depth near span means op went deeper than paint
// looked, or grew the stack.
//
//go:noinline
func depthOf(op func()) int {
	var anchor [8]byte
	paint()
	op()
	low := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(&anchor[0]), -span)), span)
	for i, b := range low {
		if b != 0xa5 {
			return span - i
		}
	}
	return span
}

// margin is room for the Go frames between a Scrub's caller and the
// primitive (the adapters' callbacks, internal/seal's Seal and Open).
const margin = 512

// TestDepthCoversPrimitives measures how deep the primitives the module
// scrubs after go, and fails when one goes deeper than its scrub reaches:
// a Go release that deepens them must raise Depth, fastDepth or DeepDepth.
// TestDepthCoversPrimitivesWithoutAssembly runs it again where the
// standard library takes its generic code.
func TestDepthCoversPrimitives(t *testing.T) {
	scrubbed := Depth
	if fast {
		scrubbed = fastDepth
	}
	if raceBuild && !fast {
		t.Skip("-race instrumentation changes the generic code's frames; the build without it measures them")
	}
	if os.Getenv(slowEnv) != "" && fast {
		t.Fatalf("GODEBUG=%s: the primitives' assembly is off, but Scrub takes it to be on", os.Getenv("GODEBUG"))
	}
	key := make([]byte, 32)
	rand.Read(key)
	msg := make([]byte, 64<<10)
	type op struct {
		name string
		max  int
		f    func()
	}
	var ops []op
	for _, n := range []int{16, 32} {
		b, _ := aes.NewCipher(key[:n])
		g, _ := cipher.NewGCM(b)
		nonce := make([]byte, g.NonceSize())
		for _, size := range []int{32, 256, 64 << 10} {
			sealed := g.Seal(nil, nonce, msg[:size], nil)
			dst := make([]byte, size+16)
			ops = append(ops,
				op{"GCM Seal", scrubbed, func() { g.Seal(dst[:0], nonce, msg[:size], nil) }},
				op{"GCM Open", scrubbed, func() { g.Open(dst[:0], nonce, sealed, nil) }})
		}
	}
	cc, _ := chacha20poly1305.New(key)
	ccNonce := make([]byte, cc.NonceSize())
	for _, size := range []int{32, 1024, 64 << 10} {
		sealed := cc.Seal(nil, ccNonce, msg[:size], nil)
		dst := make([]byte, size+16)
		ops = append(ops,
			op{"ChaCha20-Poly1305 Seal", scrubbed, func() { cc.Seal(dst[:0], ccNonce, msg[:size], nil) }},
			op{"ChaCha20-Poly1305 Open", scrubbed, func() { cc.Open(dst[:0], ccNonce, sealed, nil) }})
	}
	ops = append(ops,
		op{"HMAC-SHA256", scrubbed, func() { m := hmac.New(sha256.New, key); m.Write(msg[:64]); m.Sum(nil) }},
		op{"HMAC-SHA512", scrubbed, func() { m := hmac.New(sha512.New, key); m.Write(msg[:64]); m.Sum(nil) }})
	ed := ed25519.NewKeyFromSeed(key)
	ops = append(ops, op{"Ed25519 Sign", DeepDepth, func() { ed.Sign(nil, msg[:64], crypto.Hash(0)) }})
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op{"ECDSA " + c.Params().Name + " Sign", DeepDepth, func() { k.Sign(rand.Reader, msg[:32], crypto.SHA256) }})
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ops = append(ops, op{"RSA-2048 Sign", DeepDepth, func() { rk.Sign(rand.Reader, msg[:32], crypto.SHA256) }})
	// First uses run the FIPS module's self-tests on fixed keys, deeper:
	// measure the calls after them.
	for _, o := range ops {
		o.f()
	}
	// A collection may shrink a stack, and depthOf would then read past
	// its end: none runs while it measures. Each op is measured on a
	// goroutine of its own.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, o := range ops {
		depth := make(chan int)
		go func() { depth <- depthOf(o.f) }()
		d := <-depth
		t.Logf("%-28s %5d bytes (scrubbed: %d)", o.name, d, o.max)
		if d+margin > o.max {
			t.Errorf("%s reaches %d bytes below its caller: with %d for the frames between, more than the %d its scrub clears", o.name, d, margin, o.max)
		}
	}
}

// slowEnv marks the child processes of
// TestDepthCoversPrimitivesWithoutAssembly.
const slowEnv = "MEMSHUFFLE_STACKSCRUB_SLOW"

// TestDepthCoversPrimitivesWithoutAssembly runs TestDepthCoversPrimitives
// in a child process with the standard library's assembly for the
// primitives turned off, as on a CPU without it (amd64 without AVX2, as
// many virtual CPU models are; arm64 without the SHA-512 instructions, as
// the Cortex-A72 is): there HMAC-SHA512's generic code goes 1,728 bytes
// deep, which fastDepth does not cover with room for the frames between.
//
// Not under -race: the detector's instrumentation deepens the generic
// code's frames (ChaCha20-Poly1305's went 2,984 bytes deep), and no
// program runs its secrets in a race build; the run without it measures.
func TestDepthCoversPrimitivesWithoutAssembly(t *testing.T) {
	if raceBuild {
		t.Skip("-race instrumentation changes the generic code's frames; the build without it measures them")
	}
	var settings []string
	switch runtime.GOARCH {
	case "amd64":
		settings = []string{"cpu.avx2=off", "cpu.bmi2=off", "cpu.all=off"}
	case "arm64":
		settings = []string{"cpu.sha512=off", "cpu.all=off"}
	default:
		t.Skip("Scrub zeroes Depth on every CPU of", runtime.GOARCH)
	}
	for _, godebug := range settings {
		t.Run(godebug, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestDepthCoversPrimitives$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "GODEBUG="+godebug, slowEnv+"=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

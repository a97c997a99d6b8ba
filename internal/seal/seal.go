// Package seal is the interface between a Shuffler and the cipher that
// keeps its entries at rest, with the three implementations: AES-256-CTR
// (unauthenticated, the default), AES-256-GCM and ChaCha20-Poly1305.
//
// # Nonces and counter blocks
//
// Each encryption of an entry takes fresh values from the Shuffler's
// counter allocator, which only moves forward for the Shuffler's life. CTR
// takes one value per 16-byte block (see internal/ctr). The AEAD modes take
// one value per encryption and build their 96-bit nonce as the first four
// bytes of the salt followed by that value in big-endian order; since no
// value is handed out twice, no nonce repeats under one key, across entries,
// re-encryptions and rotations alike.
//
// # Associated data
//
// The AEAD modes authenticate the entry's Handle (16 bytes) as associated
// data: ciphertext copied from one entry over another fails to open even
// though both were sealed under the same key.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/nopreempt"
	"github.com/memshuffle/memshuffle/internal/secretmode"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
)

// ErrAuth is returned by Open when the ciphertext, its tag or its
// associated data do not authenticate.
var ErrAuth = errors.New("seal: message authentication failed")

// Mode names a cipher.
type Mode int

// The modes.
const (
	AES256CTR Mode = iota
	AES256GCM
	ChaCha20Poly1305
)

func (m Mode) String() string {
	switch m {
	case AES256CTR:
		return "AES-256-CTR"
	case AES256GCM:
		return "AES-256-GCM"
	case ChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Scratch is per-goroutine working memory a caller keeps off the Go heap:
// keystream, nonce and associated data pass through it rather than through
// the stack or heap.
type Scratch struct {
	KS    [ctr.ScratchSize]byte
	Nonce [12]byte
	AD    [16]byte
}

// Cipher encrypts and decrypts entries. Implementations are safe for
// concurrent use with a Scratch per goroutine.
type Cipher interface {
	// Overhead is the number of bytes stored after an entry's data.
	Overhead() int
	// Counters is how many counter values one encryption of n bytes uses.
	Counters(n int) uint64
	// Seal encrypts plain into dst, which holds len(plain)+Overhead bytes
	// and whose data part either is plain or does not overlap it, under
	// counter value c and associated data scr.AD.
	Seal(dst, plain []byte, c uint64, scr *Scratch)
	// Open decrypts sealed (data, then Overhead bytes of tag) into dst,
	// which is len(sealed)-Overhead bytes and either is sealed's data part
	// or does not overlap it. On ErrAuth dst's contents are unspecified.
	Open(dst, sealed []byte, c uint64, scr *Scratch) error
	// OffHeap reports whether the key schedule is outside the Go heap.
	OffHeap() bool
	// Wipe clears what the Cipher can reach of its key.
	Wipe()
}

// New returns the cipher of mode m for key and salt. state is off-heap
// memory for modes that can keep their key schedule there (CTR with
// AES-NI). New keeps neither key nor salt; the caller wipes them.
func New(m Mode, key *[32]byte, salt *[8]byte, state *[ctr.StateSize]byte) (c Cipher, err error) {
	// Key expansion leaves round keys in vector registers (see Enter).
	// Building a key takes microseconds and neither parks nor panics.
	if secretmode.On {
		secretmode.Do(func() { c, err = newCipherGuarded(m, key, salt, state) })
		return c, err
	}
	return newCipherGuarded(m, key, salt, state)
}

func newCipherGuarded(m Mode, key *[32]byte, salt *[8]byte, state *[ctr.StateSize]byte) (Cipher, error) {
	defer Enter(Pins(0)).Exit()
	if buildHookForTest != nil {
		buildHookForTest()
	}
	return newCipher(m, key, salt, state)
}

// buildHookForTest, when set, runs where New builds the key: tests probe
// there whether the runtime can preempt the goroutine.
var buildHookForTest func()

func newCipher(m Mode, key *[32]byte, salt *[8]byte, state *[ctr.StateSize]byte) (Cipher, error) {
	switch m {
	case AES256CTR:
		c, err := ctr.New(key, salt, state)
		if err != nil {
			return nil, err
		}
		return ctrCipher{c}, nil
	case AES256GCM:
		b, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, err
		}
		return newGCM(b, salt)
	case ChaCha20Poly1305:
		a, err := chacha20poly1305.New(key[:])
		if err != nil {
			return nil, err
		}
		return newAEAD(a, salt), nil
	}
	// Not formatted: newCipher may run pinned, and fmt's first use on a P
	// may wait on a lock.
	return nil, errUnknownMode
}

// newGCM makes the GCM of b. What of b the GCM does not use is garbage
// from here on, and would stay readable until its memory is reused: it is
// wiped, and the rest goes with the GCM's own wipe. Where the GCM keeps a
// copy of the schedule (crypto/aes on most machines) that is all of b. On
// s390x the GCM refers to the key in b (CPACF), which a wipe of all of b
// here turned into zeros for every later seal, or shares b's schedule
// (without CPACF); a GCM of crypto/cipher's generic code keeps b itself.
func newGCM(b cipher.Block, salt *[8]byte) (Cipher, error) {
	g, err := cipher.NewGCM(b)
	if err != nil {
		ctr.WipeObject(b)
		return nil, err
	}
	ctr.WipeSpent(b, g)
	return newAEAD(g, salt), nil
}

// errUnknownMode is New's error for a Mode not among the constants.
var errUnknownMode = errors.New("seal: unknown mode")

type ctrCipher struct{ c *ctr.Cipher }

func (x ctrCipher) Overhead() int         { return 0 }
func (x ctrCipher) Counters(n int) uint64 { return ctr.Blocks(n) }
func (x ctrCipher) OffHeap() bool         { return x.c.OffHeap() }
func (x ctrCipher) Wipe()                 { x.c.Wipe() }

func (x ctrCipher) Seal(dst, plain []byte, c uint64, scr *Scratch) {
	x.c.XOR(dst[:len(plain)], plain, c, &scr.KS)
}

func (x ctrCipher) Open(dst, sealed []byte, c uint64, scr *Scratch) error {
	x.c.XOR(dst, sealed, c, &scr.KS)
	return nil
}

// CTR returns the counter-mode cipher inside c, if c is one; RotateKey uses
// it to re-encrypt without forming the plaintext.
func CTR(c Cipher) (*ctr.Cipher, bool) {
	x, ok := c.(ctrCipher)
	return x.c, ok
}

type aeadCipher struct {
	a      cipher.AEAD
	prefix uint32
}

func newAEAD(a cipher.AEAD, salt *[8]byte) aeadCipher {
	return aeadCipher{a: a, prefix: binary.BigEndian.Uint32(salt[:4])}
}

func (x aeadCipher) Overhead() int       { return x.a.Overhead() }
func (x aeadCipher) Counters(int) uint64 { return 1 }
func (x aeadCipher) OffHeap() bool       { return false }

// Wipe clears the AEAD's memory: crypto/aes's GCM keeps the key schedule
// in its object (on s390x, the key or the schedule in memory its object
// refers to: see ctr.WipeObject), x/crypto's ChaCha20-Poly1305 the key
// itself. Both are on the Go heap, out of reach of everything but the
// Cipher, and stay readable after the Cipher is dropped until their memory
// is reused. The Cipher must not be used afterwards.
func (x aeadCipher) Wipe() { ctr.WipeObject(x.a) }

func (x aeadCipher) nonce(c uint64, scr *Scratch) []byte {
	binary.BigEndian.PutUint32(scr.Nonce[:4], x.prefix)
	binary.BigEndian.PutUint64(scr.Nonce[4:], c)
	return scr.Nonce[:]
}

// Guard covers a stretch of code that computes with key material through
// the standard library's and x/crypto's AES, GCM, ChaCha20-Poly1305, SHA-2
// and signatures, which leave it in two places: in their stack frames,
// which Exit zeroes (package stackscrub: Enter reserves the room first, so
// that the stack does not grow, copied and the old one freed, while they
// hold it); and in vector registers, through Go code, until Exit clears
// them. Two things can save those registers where nothing can wipe them:
//
//   - a signal, which makes the kernel save them in a frame on the
//     thread's signal stack: the signal watch (aesctr.WatchSignals) wipes
//     that stack if a frame landed;
//   - a preemption: an asynchronous one saves them in the runtime's per-P
//     scratch area and a block of its own, and a synchronous one leaves
//     them to the next goroutine on the thread, whose own preemption saves
//     them. In secret mode the caller runs inside secret.Do, where the
//     runtime does not preempt asynchronously; in the default build a
//     Guard entered with pin set pins the goroutine (internal/nopreempt),
//     for calls that neither park nor panic, as a pinned goroutine that
//     does either ends the process.
type Guard struct {
	w      aesctr.SignalWatch
	pinned bool
	deep   bool
}

// Guarded runs f under a Guard, pinned if pin (see Pins), over code
// whose calls reach at most stackscrub.Depth below (DeepDepth if deep).
// Unpinned, f may park or stop at a safe point, where a collection could
// shrink its stack and free the old one with what f's finished calls left
// below: there it runs where the stack cannot shrink
// (stackscrub.Unshrinkable). In secret mode the runtime erases the stacks
// it frees, and f runs as it is.
func Guarded(pin, deep bool, f func()) {
	if pin || secretmode.On {
		guarded(pin, deep, f)
		return
	}
	stackscrub.Unshrinkable(deep, func() { guarded(false, deep, f) })
}

// guarded cleans up in a deferred call, so that code that panics unpinned
// still leaves its registers cleared and its goroutine unlocked from the
// thread.
func guarded(pin, deep bool, f func()) {
	g := Enter
	if deep {
		g = EnterDeep
	}
	defer g(pin).Exit()
	f()
}

// Enter starts a Guard, pinned if pin (see Pins), over code whose calls
// reach at most stackscrub.Depth below its caller. The watch starts before
// the pin: its first use in a process sets up the signal guard, which may
// wait for another goroutine doing the same.
func Enter(pin bool) Guard {
	stackscrub.Reserve()
	return enter(pin, false)
}

// EnterDeep is Enter for code whose calls reach as far as
// stackscrub.DeepDepth: the signatures.
func EnterDeep(pin bool) Guard {
	stackscrub.ReserveDeep()
	return enter(pin, true)
}

func enter(pin, deep bool) Guard {
	w := aesctr.WatchSignals()
	if pin {
		nopreempt.Pin()
	}
	return Guard{w, pin, deep}
}

// Exit zeroes the stack below its caller and clears the vector registers,
// then unpins and ends the watch. It is called once per Enter, on the same
// goroutine, from the frame that called Enter, also when the guarded code
// panics unpinned (defer it).
func (g Guard) Exit() {
	if g.deep {
		stackscrub.ScrubDeep()
	} else {
		stackscrub.Scrub()
	}
	aesctr.ClearVectors()
	if g.pinned {
		nopreempt.Unpin()
	}
	g.w.End()
}

// check panics on what would make the AEAD panic, before its Guard: a
// panic while pinned would end the process.
func (x aeadCipher) check(dst, in, nonce, ad []byte) {
	if len(nonce) != x.a.NonceSize() {
		// A wiped AEAD reports a nonce size of 0.
		panic("seal: the AEAD's nonce size is not " + fmt.Sprint(len(nonce)) + ": it was wiped")
	}
	if aesctr.OverlapsInexactly(dst, in) {
		panic("seal: output overlaps the input without starting at it")
	}
	if aesctr.Overlaps(dst, ad) {
		panic("seal: output overlaps the associated data")
	}
}

// PinMax is the longest input the default build seals or opens pinned
// (see Seal): every stop-the-world of the process waits for a pinned
// call, and calls of 256 KiB took 70-130 us here (GCM, then
// ChaCha20-Poly1305). Longer ones run unpinned.
const PinMax = 256 << 10

// Pins reports whether a Guard over a computation on n bytes pins its
// goroutine: in the default build, not in secret mode (secret.Do keeps the
// preemptions out by itself), and not with BoringCrypto (CryptoInGo), for
// up to PinMax bytes.
func Pins(n int) bool {
	return !secretmode.On && CryptoInGo && n <= PinMax && !noPinForTest.Load()
}

// noPinForTest turns the pin off, for the control of tests that show what
// it prevents.
var noPinForTest atomic.Bool

// SetPinningForTest turns the pinning of Guards (see Pins) on or off and
// reports whether it was on. Only tests call it, as the control
// of what the pin prevents.
func SetPinningForTest(on bool) bool { return !noPinForTest.Swap(!on) }

// Seal and Open run the AEAD under a Guard: inside secret.Do in secret
// mode, pinned in the default build for up to PinMax bytes. Longer calls in
// the default build stay open to preemption.
func (x aeadCipher) Seal(dst, plain []byte, c uint64, scr *Scratch) {
	if secretmode.On {
		secretmode.Do(func() { x.seal(dst, plain, c, scr) })
		return
	}
	x.seal(dst, plain, c, scr)
}

func (x aeadCipher) Open(dst, sealed []byte, c uint64, scr *Scratch) error {
	var err error
	if secretmode.On {
		secretmode.Do(func() { err = x.open(dst, sealed, c, scr) })
	} else {
		err = x.open(dst, sealed, c, scr)
	}
	if err != nil {
		return ErrAuth
	}
	return nil
}

// seal and open run the AEAD under a Guard, pinned up to PinMax bytes.
func (x aeadCipher) seal(dst, plain []byte, c uint64, scr *Scratch) {
	nonce := x.nonce(c, scr)
	x.check(dst, plain, nonce, scr.AD[:])
	Guarded(Pins(len(plain)), false, func() { x.a.Seal(dst[:0], nonce, plain, scr.AD[:]) })
}

func (x aeadCipher) open(dst, sealed []byte, c uint64, scr *Scratch) (err error) {
	nonce := x.nonce(c, scr)
	x.check(dst, sealed, nonce, scr.AD[:])
	Guarded(Pins(len(dst)), false, func() { _, err = x.a.Open(dst[:0], nonce, sealed, scr.AD[:]) })
	return err
}

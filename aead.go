package memshuffle

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
)

// AEAD is AES-GCM (NIST SP 800-38D) with 12-byte nonces and 16-byte tags,
// whose key is an entry of a Shuffler. It seals and opens as crypto/cipher's
// GCM does and produces the same bytes, but reports every failure as an
// error instead of a panic (ErrNilArgument for a nil *AEAD). It is safe for
// concurrent use.
//
// Each call builds the AES key schedule and the GCM tables from a view of
// the key, uses them and zeroes them before returning, so no copy of the
// key or of its schedule outlives the call; in secret mode (see SecretMode)
// the call runs inside secret.Do. The price is the key setup on every call.
type AEAD struct {
	s   *Shuffler
	key Handle
}

const (
	aeadNonceSize = 12
	aeadTagSize   = 16

	// aeadMaxPlaintext is the most GCM encrypts under one nonce, 2^32-2
	// blocks (NIST SP 800-38D): about 64 GiB.
	aeadMaxPlaintext uint64 = (1<<32 - 2) * 16
)

// NewAEAD returns an AEAD whose key is the entry key: 16, 24 or 32 bytes,
// for AES-128, AES-192 or AES-256. Any other size fails with ErrInvalidKey.
// The entry must stay allocated while the AEAD is used. The key is read at
// each Seal and Open, not here: an entry may be made, given to NewAEAD and
// filled afterwards, but Seal and Open of an entry that is all zeros then
// (an Alloc'd key nobody filled, a key anyone can use) fail with
// ErrInvalidKey.
//
// Under GODEBUG=fips140=only NewAEAD fails with ErrUnsupported, as
// crypto/cipher's NewGCM does: the FIPS module allows GCM only with nonces
// it draws itself.
func NewAEAD(s *Shuffler, key Handle) (*AEAD, error) {
	n, err := s.Size(key)
	if err != nil {
		return nil, err
	}
	if n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%w: AES key of %d bytes", ErrInvalidKey, n)
	}
	if err := aeadRefused(); err != nil {
		return nil, err
	}
	return &AEAD{s: s, key: key}, nil
}

// NonceSize returns 12: the nonce must be 12 bytes, and must never repeat
// under one key.
func (a *AEAD) NonceSize() int { return aeadNonceSize }

// Overhead returns 16, the size of the tag.
func (a *AEAD) Overhead() int { return aeadTagSize }

// Seal encrypts and authenticates plaintext, authenticates additionalData,
// and appends the result to dst. To reuse plaintext's storage for the
// output, use plaintext[:0] as dst; otherwise the bytes Seal appends must
// not overlap plaintext, or Seal fails with ErrBufferOverlap, and they must
// not overlap additionalData at all (ErrBufferOverlap too, where
// crypto/cipher panics). Output that does not fit dst's spare capacity goes
// to a new buffer, which overlaps nothing. A nonce of the wrong size, or a plaintext longer than GCM
// allows (2^32-2 blocks, about 64 GiB), fails with ErrInvalidSize, and a
// key entry of zeros with ErrInvalidKey (see NewAEAD); under
// GODEBUG=fips140=only Seal fails with ErrUnsupported. On error dst is
// returned as it was, and so is a plaintext being sealed in place, unless
// the call failed after it began to encrypt: a Close or Purge meanwhile
// (ErrClosed), or the key's expiry passing during the call (ErrExpired).
// Then the bytes it would have appended are zeroed.
func (a *AEAD) Seal(dst, nonce, plaintext, additionalData []byte) ([]byte, error) {
	if err := a.checkArgs(nonce); err != nil {
		return dst, err
	}
	if uint64(len(plaintext)) > aeadMaxPlaintext {
		// Before do grows dst by that much; crypto/cipher would panic.
		return dst, fmt.Errorf("%w: plaintext of %d bytes, GCM takes at most %d", ErrInvalidSize, len(plaintext), aeadMaxPlaintext)
	}
	if spareOverlaps(dst, len(plaintext)+aeadTagSize, additionalData) {
		return dst, ErrBufferOverlap
	}
	return a.do(dst, nonce, plaintext, len(plaintext)+aeadTagSize,
		func(g cipher.AEAD, out []byte) ([]byte, error) {
			return g.Seal(out, nonce, plaintext, additionalData), nil
		})
}

// Open authenticates ciphertext and additionalData and, if they are
// authentic, decrypts ciphertext and appends the plaintext to dst. A
// forged or damaged message fails with ErrAuthFailed and zeroes the bytes
// of dst's spare capacity it would have appended (none, if they did not
// fit). The buffer rules, the errors for a bad nonce or key, and what
// other errors leave (a ciphertext opened in place as it was, unless the
// call failed after it began, as for Seal), are Seal's.
func (a *AEAD) Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error) {
	// Before the length check: a nil *AEAD or a wrong nonce is the
	// caller's mistake, which ErrAuthFailed would pass off as a forgery.
	if err := a.checkArgs(nonce); err != nil {
		return dst, err
	}
	if len(ciphertext) < aeadTagSize || uint64(len(ciphertext)-aeadTagSize) > aeadMaxPlaintext {
		// No Seal made it: refused before do grows dst by that much.
		return dst, ErrAuthFailed
	}
	if spareOverlaps(dst, len(ciphertext)-aeadTagSize, additionalData) {
		return dst, ErrBufferOverlap
	}
	return a.do(dst, nonce, ciphertext, len(ciphertext)-aeadTagSize,
		func(g cipher.AEAD, out []byte) ([]byte, error) {
			out, err := g.Open(out, nonce, ciphertext, additionalData)
			if err != nil {
				return nil, ErrAuthFailed
			}
			return out, nil
		})
}

// checkArgs refuses a nil *AEAD and a nonce of the wrong size.
func (a *AEAD) checkArgs(nonce []byte) error {
	if a == nil {
		// What a NewAEAD whose error went unchecked leaves.
		return fmt.Errorf("%w: nil *AEAD", ErrNilArgument)
	}
	if len(nonce) != aeadNonceSize {
		return fmt.Errorf("%w: nonce of %d bytes, want %d", ErrInvalidSize, len(nonce), aeadNonceSize)
	}
	return nil
}

// do grows dst by n bytes before the key is read (so that nothing is
// allocated inside secret.Do), and runs op with a GCM built from a view of
// the key, zeroing the GCM afterwards. The caller has run checkArgs.
func (a *AEAD) do(dst, nonce, in []byte, n int, op func(cipher.AEAD, []byte) ([]byte, error)) ([]byte, error) {
	out := dst
	if cap(dst)-len(dst) < n {
		out = make([]byte, len(dst), len(dst)+n)
		copy(out, dst)
	}
	if spare := out[len(out) : len(out)+n]; aesctr.OverlapsInexactly(spare, in) {
		return dst, ErrBufferOverlap
	}
	learnWipeTypes()
	var res []byte
	// The callback runs pinned: it formats no error (fmt's first use on a
	// P takes a lock), it hands the cipher's error out in setupErr.
	var setupErr error
	ran := false // op was called, and may have written to out
	err := borrowKey(a.s, a.key, pinRule{safe: true, extra: n}, func(k []byte) error {
		if keyIsZero(k) {
			return errZeroKey
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			setupErr = err
			return errKeySetup
		}
		defer wipePointee(block)
		g, err := cipher.NewGCM(block)
		if err != nil {
			// Not the key: crypto/aes took it. The FIPS 140-only mode
			// refuses the caller's nonces (NewAEAD refuses them too,
			// unless it ran inside fips140.WithoutEnforcement).
			setupErr = err
			return errGCMRefused
		}
		defer wipePointee(g)
		ran = true
		res, err = op(g, out)
		return err
	})
	switch err {
	case errKeySetup:
		err = fmt.Errorf("%w: %w", ErrInvalidKey, setupErr)
	case errGCMRefused:
		err = fmt.Errorf("%w: %w", ErrUnsupported, setupErr)
	}
	if err != nil {
		if ran {
			// op wrote before it failed, or before the borrow failed to
			// end (a Purge or Close between the two, which may have
			// zeroed the key under it): take back what it wrote, a
			// plaintext for Open, from the spare capacity the caller may
			// never look at. Where op never ran, the spare capacity is
			// left alone: it may be the caller's message, sealed or
			// opened in place, which a call refused before it began must
			// not destroy.
			Wipe(out[len(out) : len(out)+n])
		}
		return dst, err
	}
	return res, nil
}

// errKeySetup is what do's callback returns when crypto/aes or
// crypto/cipher refuses the key; do replaces it with ErrInvalidKey and
// their error.
var errKeySetup = errors.New("memshuffle: the key was refused")

// errGCMRefused is what do's callback returns when crypto/cipher refuses
// to make a GCM of a block it accepted; do replaces it with ErrUnsupported
// and crypto/cipher's error.
var errGCMRefused = errors.New("memshuffle: GCM was refused")

// wipePointee zeroes the object v points to, the AES schedule or the GCM
// state crypto/cipher made. Where its type holds no pointers (Go 1.26 on
// every machine but s390x) it writes zeros over the object's bytes. Where
// it does, a byte wipe could hide pointers from the garbage collector, and
// the key is not all in the object: on s390x crypto/aes's Block keeps it in
// a slice and its schedule behind a pointer, which a GCM made from it
// shares. ctr.WipeObject clears the object typed and what it refers to.
// The GCM is wiped before its Block (do defers them in that order): its
// wipe clears the key the two share.
func wipePointee(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return
	}
	t := rv.Type().Elem()
	// No store here: wipePointee runs pinned, and a store may wait on a
	// lock. A type learnWipeTypes did not meet (one a crypto/fips140
	// mode makes only some calls build) is walked on every call.
	plain, ok := plainTypes.Load(t)
	if !ok {
		plain = pointerIn(t, "") == ""
	}
	if !plain.(bool) {
		ctr.WipeObject(v)
		return
	}
	Wipe(unsafe.Slice((*byte)(rv.UnsafePointer()), t.Size()))
}

// learnWipeType stores in plainTypes whether wipePointee may zero what v
// points to.
func learnWipeType(v any) {
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer {
		plainTypes.LoadOrStore(t.Elem(), pointerIn(t.Elem(), "") == "")
	}
}

// plainTypes caches, per reflect.Type, whether wipePointee may zero it:
// walking a type's fields on every call would cost more than the AES key
// setup.
var plainTypes sync.Map

// learnWipeTypes puts the types of what crypto/aes and crypto/cipher make
// into plainTypes, once, before do pins its goroutine: a first store in a
// sync.Map may wait on a lock, which a pinned goroutine must not (see
// internal/nopreempt), while a lookup of a stored type never does.
var learnWipeTypes = sync.OnceFunc(func() {
	var zero [32]byte
	b, err := aes.NewCipher(zero[:])
	if err != nil {
		return
	}
	learnWipeType(b)
	if g, err := cipher.NewGCM(b); err == nil {
		learnWipeType(g)
	}
})

// spareOverlaps reports whether the n bytes Seal or Open would append to
// dst in place share memory with the additional data ad, which
// crypto/cipher panics on: it would authenticate ad after writing over it.
// Output that does not fit dst's capacity goes to a new buffer, which
// overlaps nothing.
func spareOverlaps(dst []byte, n int, ad []byte) bool {
	return cap(dst)-len(dst) >= n && aesctr.Overlaps(dst[len(dst):len(dst)+n], ad)
}

package memshuffle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/fips140"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	encoding_asn1 "encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/memshuffle/memshuffle/internal/seal"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// NewSigner returns a crypto.Signer whose private key is the entry h: a
// PKCS#8 DER private key, as ReadPrivateKey stores one. Ed25519 keys,
// ECDSA keys on P-256, P-384 and P-521, and RSA keys of 2048 to 4096 bits
// are supported; anything else fails with ErrInvalidKey, and so does an
// Ed25519 key whose seed is all zeros (compared in constant time): a seed
// nobody filled, whose signatures anyone can forge.
//
// Public returns the public key, which NewSigner derives once and keeps on
// the Go heap, as a copy of its own on each call: changing it changes
// nothing the Signer signs with. Sign parses the key out of a view of the entry for each
// signature and signs (an RSA key of the pool, checked against the entry,
// signs after the view ends): with an *ecdsa.PrivateKey, ed25519.PrivateKey or
// *rsa.PrivateKey's Sign, so opts and rand mean what they mean there, except
// that an ECDSA key needs a rand: the deterministic signatures of RFC 6979,
// which crypto/ecdsa makes for a nil one, leave most or all of the scalar
// in a hash's buffer on the Go heap at every signature (31 of 32 bytes for
// P-256 under SHA-256; all of it where the hash's block holds the scalar
// whole, as SHA-384's and SHA-512's do), so a nil rand fails with
// ErrUnsupported, before the entry is read: also after Close. Sign also
// returns an error where those panic: ErrNilArgument for nil opts, a nil
// pointer included, and ErrInvalidOption for opts naming a hash function
// unknown or not linked into the program where one is needed (RSA-PSS).
// A digest of another length than the hash opts
// name fails with ErrInvalidOption too, for every key, and so does ECDSA
// with opts naming a hash crypto does not know, rand or not (crypto/ecdsa
// would sign either, truncated, when given a rand; crypto.Hash(0) still
// signs the digest as given, as it does there). Whatever else those refuse (opts
// they cannot use) fails with an error
// matching ErrInvalidOption that wraps theirs, or, under GODEBUG=fips140=only,
// ErrUnsupported for what the FIPS module refuses (a rand other than
// crypto/rand.Reader where it is read, say). RSA-PSS reads rand for its
// salt, and needs one: a nil rand fails with ErrNilArgument. ECDSA reads
// it only under GODEBUG=cryptocustomrand=1 (Go 1.26 uses its own source
// otherwise). A PSS salt longer than the key leaves room for fails with
// ErrInvalidOption before rand is read. Where rand is read, its error is
// returned, wrapped, a count it cannot have read fails with
// ErrInvalidCount, 100 empty reads in a row with io.ErrNoProgress, and its
// panic with an error matching ErrPanicked. Sign reads the key from the
// entry for each signature; what it holds of an Ed25519 or ECDSA key
// outside the entry is wiped before it returns, and an RSA key is parsed
// once for each key of the Signer's pool (below) and kept. In secret mode
// (see SecretMode) the parse and the signature run inside secret.Do, so
// the copies the standard library makes are erased too once unreachable.
// The package documentation lists what stays behind in each build.
//
// The Signer works as tls.Certificate's PrivateKey and with
// x509.CreateCertificate, and is safe for concurrent use; an Ed25519
// Signer's signatures take turns, since they share the one key buffer
// crypto/ed25519 caches its expanded key under, and an ECDSA or RSA
// Signer's run at most GOMAXPROCS (at NewSigner) at once, each with a key
// of a pool: crypto/ecdsa caches its form of the scalar under each, and an
// RSA key is parsed once per key of the pool and kept (SECURITY.md: a key
// or a parse per signature leaves hundreds of copies in a dump of a busy
// process). Those copies live as long as the Signer; Purge and Close do
// not reach them. Sign calls opts' HashFunc once, before it waits for its
// turn, so opts may sign with the same Signer; rand is read during the
// turn, and a rand that signs with the same Signer waits for itself once
// every turn is taken. The entry must
// hold the same key for as long as the Signer is used; to change keys, make
// a new Signer. Sign fails with ErrInvalidKey when the entry no longer
// parses or holds another key than the Signer was made for, whose
// signatures Public would not verify (for Ed25519, a signature made with
// one key and another key's public half gives the private key away).
// Freeing the entry makes Sign fail with ErrInvalidHandle.
func NewSigner(s *Shuffler, h Handle) (crypto.Signer, error) {
	k := &signer{s: s, h: h}
	err := borrowKey(s, h, pinRule{deep: true}, func(der []byte) error {
		if pkcs8IsEd25519(der) {
			return k.setEd25519(der)
		}
		key, err := parseSignerKey(der)
		if err != nil {
			return err
		}
		defer wipeKey(key)
		if err := k.setPublic(key); err != nil {
			return err
		}
		// Sign reads EC keys with a stricter parser of its own (no
		// trailing bytes): fail now rather than at every Sign.
		switch k.kind {
		case keyECDSA:
			var d []byte
			if d, err = pkcs8ECScalar(der, k.ecBytes); err == nil {
				k.ecCheck = keyCheck("ECDSA", trimZeros(d))
			}
		default:
			_, err = pkcs8Private(der)
			k.rsaCheck = keyCheck("RSA", der)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if k.kind == keyEd25519 {
		k.keys.init(1)
	} else {
		k.keys.init(runtime.GOMAXPROCS(0))
	}
	return k, nil
}

// parseSignerKey parses der, a PKCS#8 key, with crypto/x509. As in
// ReadPrivateKey, only PKCS#8 of a kind a Signer takes gets there:
// crypto/x509's parse copies an X25519 scalar to the heap before refusing
// it, and its PKCS#8 parser, failing, parses SEC 1 and PKCS#1 keys to word
// its error. The caller wipes the key.
func parseSignerKey(der []byte) (any, error) {
	if derForm(der) != "PRIVATE KEY" || !pkcs8Supported(der) {
		return nil, fmt.Errorf("%w: not a PKCS#8 key of a kind a Signer takes", ErrInvalidKey)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return key, nil
}

type keyKind int

const (
	keyEd25519 keyKind = iota + 1
	keyECDSA
	keyRSA
)

// signer is the crypto.Signer of NewSigner.
type signer struct {
	s    *Shuffler
	h    Handle
	kind keyKind
	pub  crypto.PublicKey

	edPub   ed25519.PublicKey
	edCheck []byte // keyCheck of the seed Public belongs to
	ecPub   *ecdsa.PublicKey
	ecBytes int    // the length of the curve's scalars
	ecCheck []byte // keyCheck of the scalar Public belongs to

	// keys holds the keys the Signer signs with, each reused for as long
	// as the Signer lives, because the standard library caches what it
	// derives from a key under a weak pointer to it and never wipes that:
	// crypto/ed25519 the expanded key (seed, scalar, prefix) under the
	// key's first byte, crypto/ecdsa its FIPS form of the scalar under the
	// *ecdsa.PrivateKey; and a parse of an RSA key leaves every form of d,
	// p, q and the CRT values that crypto/x509 and crypto/rsa make. A key,
	// or a parse, per signature left a copy per signature until the memory
	// was reused or, in secret mode, until the second collection after it:
	// hundreds in a dump of a busy process (TestAdapterCopies' busy
	// phase). Reused, each key is one such copy; in secret mode it is made
	// inside secret.Do and erased once the Signer is gone. An Ed25519 key
	// buffer and an ECDSA key's D hold the key only during a signature; an
	// RSA key is parsed once and kept, and rsaCheck tells whether the entry
	// still holds the key it was parsed from. Ed25519 signatures take turns
	// with one key; ECDSA and RSA ones run up to GOMAXPROCS at once.
	keys     keyPool
	rsaCheck []byte
}

// keyPool holds the keys a Signer signs with, each reused. It makes a key
// only when every one it has is in use, and lets at most as many
// signatures run at once as it may hold keys, so a Signer keeps no more
// keys, and no more of the copies the standard library caches of them,
// than that.
type keyPool struct {
	sem  chan struct{} // a token per signature under way
	mu   sync.Mutex
	idle []crypto.Signer // last in, first out: sequential signatures use one
}

// init lets the pool hold n keys, with room for them made now, so that
// put never allocates: Sign calls it on the caller's stack, outside the
// room the signature has reserved, and an allocation there can grow the
// stack.
func (p *keyPool) init(n int) {
	p.sem = make(chan struct{}, n)
	p.idle = make([]crypto.Signer, 0, n)
}

// get waits for a turn and returns an idle key, or nil: the signature
// makes one then, inside the call (and secret.Do, in secret mode).
func (p *keyPool) get() crypto.Signer {
	p.sem <- struct{}{}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	key := p.idle[n-1]
	p.idle = p.idle[:n-1]
	return key
}

// put gives back the turn, and key, if the signature made or used one.
func (p *keyPool) put(key crypto.Signer) {
	if key != nil {
		p.mu.Lock()
		p.idle = append(p.idle, key)
		p.mu.Unlock()
	}
	<-p.sem
}

// setEd25519 keeps the public half of the Ed25519 key in der and what
// tells its seed apart. It parses der itself: crypto/x509's parse copies
// the seed to the heap (encoding/asn1 copies an OCTET STRING), where
// nothing can wipe it, and returns the key it expands from it there.
// ed25519.NewKeyFromSeed keeps its expanded key (scalar and prefix) in its
// frames, which the Guard around the call zeroes, and returns the seed and
// public key, which are wiped.
func (k *signer) setEd25519(der []byte) error {
	seed, err := pkcs8Ed25519Seed(der)
	if err != nil {
		return err
	}
	if keyIsZero(seed) {
		return fmt.Errorf("%w: Ed25519 seed of zeros", ErrInvalidKey)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	defer Wipe(priv)
	k.kind = keyEd25519
	k.edPub = append(ed25519.PublicKey(nil), priv[ed25519.SeedSize:]...)
	k.pub = k.edPub
	k.edCheck = keyCheck("Ed25519", seed)
	return nil
}

// setPublic checks that key is supported and keeps its public half.
func (k *signer) setPublic(key any) error {
	switch key := key.(type) {
	case ed25519.PrivateKey: // from ReadPrivateKey; NewSigner uses setEd25519
		// The seed, read in place: Seed would copy it to the heap.
		if keyIsZero(key[:ed25519.SeedSize]) {
			return fmt.Errorf("%w: Ed25519 seed of zeros", ErrInvalidKey)
		}
		k.kind = keyEd25519
		k.edPub = key.Public().(ed25519.PublicKey) // a copy
		k.pub = k.edPub
	case *ecdsa.PrivateKey:
		switch key.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("%w: ECDSA curve %s", ErrInvalidKey, key.Curve.Params().Name)
		}
		q, err := key.PublicKey.Bytes()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		if k.ecPub, err = ecdsa.ParseUncompressedPublicKey(key.Curve, q); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		k.kind = keyECDSA
		k.ecBytes = (key.Curve.Params().N.BitLen() + 7) / 8
		k.pub = k.ecPub
	case *rsa.PrivateKey:
		if n := key.N.BitLen(); n < 2048 || n > 4096 {
			return fmt.Errorf("%w: RSA key of %d bits; want 2048 to 4096", ErrInvalidKey, n)
		}
		if len(key.Primes) != 2 {
			return fmt.Errorf("%w: multi-prime RSA key", ErrInvalidKey)
		}
		k.kind = keyRSA
		k.pub = &rsa.PublicKey{N: new(big.Int).Set(key.N), E: key.E}
	default:
		return fmt.Errorf("%w: key type %T", ErrInvalidKey, key)
	}
	return nil
}

// Public returns the public key: an ed25519.PublicKey, *ecdsa.PublicKey or
// *rsa.PublicKey, a copy of its own on each call. The Signer signs with the
// public half it keeps: handing that out, as it did, let a caller that
// changed the key it was given (decoding into it, reusing the buffer) make
// Ed25519 sign one message with two public halves and the same nonce,
// which gives the private scalar away.
func (k *signer) Public() crypto.PublicKey {
	switch pub := k.pub.(type) {
	case ed25519.PublicKey:
		return slices.Clone(pub)
	case *ecdsa.PublicKey:
		q, err := pub.Bytes()
		if err != nil {
			return nil // not reached: NewSigner parsed it from these bytes
		}
		c, err := ecdsa.ParseUncompressedPublicKey(pub.Curve, q)
		if err != nil {
			return nil
		}
		return c
	case *rsa.PublicKey:
		return &rsa.PublicKey{N: new(big.Int).Set(pub.N), E: pub.E}
	}
	return k.pub
}

// Sign signs digest (the message itself, for Ed25519) with the key in the
// entry; see NewSigner.
func (k *signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) (sig []byte, err error) {
	if opts == nil || isNilPointer(opts) {
		return nil, fmt.Errorf("%w: nil crypto.SignerOpts", ErrNilArgument)
	}
	if opts, err = plainOpts(k.kind, opts); err != nil {
		return nil, err
	}
	if h := opts.HashFunc(); k.kind == keyECDSA && h != 0 {
		// crypto/ecdsa refuses this only with a nil rand (RFC 6979); with
		// one it signs whatever digest it is given, truncated to the
		// curve's size: a message passed for its hash would be signed by
		// its first bytes, for any message that shares them. A hash
		// crypto does not know has no length to hold the digest to, so
		// it is refused too, with or without rand.
		n, ok := hashSize(h)
		if !ok {
			return nil, fmt.Errorf("%w: %v, a hash function crypto does not know", ErrInvalidOption, h)
		}
		if len(digest) != n {
			return nil, fmt.Errorf("%w: a digest of %d bytes for %v, which makes %d", ErrInvalidOption, len(digest), h, n)
		}
	}
	if k.kind == keyECDSA && rand == nil {
		// RFC 6979's HMAC_DRBG writes the scalar into a hash on the heap
		// after V and a byte: with SHA-256 all of a P-256 scalar but its
		// last byte stays in the hash's buffer, unwiped, and with a larger
		// block (SHA-384, SHA-512) all of it. The randomized signature
		// writes it at a block's start and overwrites it with the digest.
		return nil, fmt.Errorf("%w: deterministic ECDSA (a nil rand) leaves the private scalar on the Go heap at each signature; pass a rand, such as crypto/rand.Reader", ErrUnsupported)
	}
	// A key of the pool is taken before the key is read, so that a Sign
	// waiting for its turn waits outside the call whose stack is zeroed
	// after it: a collection may shrink the stack of a goroutine parked
	// there, freeing the old one with what the call had left in it.
	key := k.keys.get()
	defer func() {
		k.keys.put(key)
		k.s.flushLog() // not inside the turn: see borrowKeyQuiet
	}()
	var pooled *rsa.PrivateKey
	err = borrowKeyQuiet(k.s, k.h, pinRule{deep: true}, func(der []byte) error {
		switch k.kind {
		case keyEd25519:
			sig, err = k.signEd25519(der, &key, digest, opts)
		case keyECDSA:
			sig, err = k.signECDSA(der, &key, rand, digest, opts)
		default:
			pooled, sig, err = k.signRSA(der, &key, rand, digest, opts)
		}
		return err
	})
	if err != nil {
		// A signature made from a wiped entry (Purge during the call) is
		// no signature of the key.
		return nil, err
	}
	if pooled != nil {
		// The pool's key, checked against the entry, signs on its own:
		// the entry is sealed again, and free to move, for the
		// milliseconds of an RSA signature. Overlapping signatures kept
		// their views open end to end, and a busy Signer's entry stayed
		// decrypted, in one place, for minutes. The signature's frames
		// are zeroed as under the view, and run in secret.Do in secret
		// mode.
		runSecret(func() {
			seal.Guarded(false, true, func() { sig, err = signRSAWith(pooled, rand, digest, opts) })
		})
		if err != nil {
			return nil, err
		}
		// As for a signature under the view: one that a Purge, Close or
		// Free overtook is no signature of the Shuffler's any more.
		if err := k.s.stillLive(k.h); err != nil {
			return nil, err
		}
	}
	return sig, nil
}

// hashSize is h.Size(), and false for no hash or a value crypto.Hash does
// not know, where Size panics. Linked into the program or not, a known
// hash has its size.
func hashSize(h crypto.Hash) (n int, ok bool) {
	if h == 0 {
		return 0, false
	}
	defer func() {
		if recover() != nil {
			n, ok = 0, false
		}
	}()
	return h.Size(), true
}

// trimZeros returns b without its leading zero bytes: an EC scalar's
// encodings differ by them (with or without the curve's full length),
// and its key check must not.
func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// isNilPointer reports whether v is a nil pointer: opts of a pointer type
// whose HashFunc reads its receiver, as *rsa.PSSOptions' does.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// stdSign runs sign, a standard library Sign given the caller's opts, and
// types what it refuses. Its errors (opts it cannot use, a digest of
// another length than their hash's or too long for the key) match no
// sentinel of ours, and crypto/rsa and crypto/ecdsa panic on opts naming a
// hash function that is unknown or not linked in: bad input either way,
// so ErrInvalidOption.
// What the FIPS 140-only mode refuses is ErrUnsupported instead.
//
// The caller's rand (read by RSA-PSS, and by ECDSA under
// GODEBUG=cryptocustomrand=1) is the caller's code: its error is passed on
// and its panic is ErrPanicked, as for the readers ReadAll is given.
func stdSign(opts crypto.SignerOpts, rand *watchedReader, sign func() ([]byte, error)) (sig []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			if rand != nil && rand.panicked {
				sig, err = nil, panicError("rand", p)
				return
			}
			sig, err = nil, optsPanicked(opts, p)
		}
	}()
	if sig, err = sign(); err != nil {
		if rand != nil && rand.err != nil {
			// The caller's error, whose Is may panic: then it is in the
			// chain, as nothing else calls it.
			if is, ok := errorsIs(err, rand.err); is || !ok {
				return nil, fmt.Errorf("memshuffle: signing: reading rand: %w", rand.err)
			}
			// io.ReadFull's word for an EOF after some bytes.
			if rand.err == io.EOF && errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("memshuffle: signing: reading rand: %w", io.ErrUnexpectedEOF)
			}
		}
		if fips140.Enforced() && strings.Contains(err.Error(), "FIPS 140-only mode") {
			return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return sig, nil
}

// optsPanicked is Sign's error for a panic while crypto used opts: bad
// input, so ErrInvalidOption.
func optsPanicked(opts crypto.SignerOpts, p any) error {
	return fmt.Errorf("%w: signing with %T %v: %v", ErrInvalidOption, opts, opts, p)
}

// watchedReader is the caller's rand for Sign, noting whether it failed or
// panicked, so that stdSign blames neither on the opts.
type watchedReader struct {
	r        io.Reader
	err      error
	panicked bool
}

// watchRand wraps rand, unless it is nil (which Sign refuses where it
// would be read, or crypto reads no rand) or crypto/rand.Reader, which the
// FIPS 140-only mode accepts and a wrapper of it not.
func watchRand(rand io.Reader) *watchedReader {
	if rand == nil || rand == cryptorand.Reader {
		return nil
	}
	return &watchedReader{r: rand}
}

// nilRand stands in for a nil rand where crypto/rsa would read one.
type nilRand struct{}

func (nilRand) Read([]byte) (int, error) { return 0, errNilRand }

var errNilRand = fmt.Errorf("%w: nil rand, where RSA-PSS reads its salt", ErrNilArgument)

// reader is what to hand crypto: w, or the caller's rand as it was.
func (w *watchedReader) reader(rand io.Reader) io.Reader {
	if w == nil {
		return rand
	}
	return w
}

// Read reads as ReadAll does (readSome): a count rand cannot have read
// fails with ErrInvalidCount, where io.ReadFull would slice with it, and
// endless empty reads with io.ErrNoProgress, where it would call again for
// ever.
func (w *watchedReader) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		// readSome would take an empty buffer's empty reads for no
		// progress.
		return 0, nil
	}
	w.panicked = true
	n, err = readSome(w.r, p)
	w.panicked = false
	if err != nil {
		w.err = err
	}
	return n, err
}

// plainOpts runs the caller's code in opts, HashFunc, before Sign takes a
// turn of the key pool, where a HashFunc that signs again with the same
// Signer would wait for itself once every turn is taken (at once, for
// Ed25519's one). It returns opts crypto reads as it would have read
// these, whose methods run nothing of the caller's: a copy of an
// *ed25519.Options (for Ed25519) or an *rsa.PSSOptions (for RSA), or the
// crypto.Hash HashFunc returned. A panic in HashFunc is an error matching
// ErrInvalidOption, as in stdSign.
func plainOpts(kind keyKind, opts crypto.SignerOpts) (_ crypto.SignerOpts, err error) {
	defer func() {
		if p := recover(); p != nil {
			// Only opts' own HashFunc runs here: the caller's code.
			err = fmt.Errorf("%w: %w", ErrInvalidOption, panicError(fmt.Sprintf("HashFunc of %T", opts), p))
		}
	}()
	switch o := opts.(type) {
	case *ed25519.Options:
		if kind == keyEd25519 {
			c := *o
			return &c, nil
		}
	case *rsa.PSSOptions:
		if kind == keyRSA {
			c := *o
			return &c, nil
		}
	}
	return opts.HashFunc(), nil
}

// signEd25519 signs with *slot, the pool's key buffer (see keys), which
// it makes if it is nil.
func (k *signer) signEd25519(der []byte, slot *crypto.Signer, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	seed, err := pkcs8Ed25519Seed(der)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(keyCheck("Ed25519", seed), k.edCheck) != 1 {
		return nil, fmt.Errorf("%w: the entry holds another Ed25519 key than the Signer was made for", ErrInvalidKey)
	}
	// The key handed to crypto/ed25519 must be Go heap memory: its cache
	// takes a weak pointer to the first byte, and the runtime aborts the
	// process for a weak pointer into memory it does not manage, such as
	// the entry.
	key, _ := (*slot).(ed25519.PrivateKey)
	if key == nil {
		key = make(ed25519.PrivateKey, ed25519.PrivateKeySize)
		*slot = key
	}
	defer Wipe(key)
	copy(key, seed)
	copy(key[ed25519.SeedSize:], k.edPub)
	return stdSign(opts, nil, func() ([]byte, error) { return key.Sign(nil, msg, opts) })
}

// signECDSA signs with *slot, a key of the pool (see keys), which it
// makes if it is nil.
func (k *signer) signECDSA(der []byte, slot *crypto.Signer, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	d, err := pkcs8ECScalar(der, k.ecBytes)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(keyCheck("ECDSA", trimZeros(d)), k.ecCheck) != 1 {
		// Signed with the Signer's public key, its signatures would
		// verify under neither key.
		return nil, fmt.Errorf("%w: the entry holds another ECDSA key than the Signer was made for", ErrInvalidKey)
	}
	// The public key is the one NewSigner derived: parsing with
	// crypto/x509 or ecdsa.ParseRawPrivateKey would derive it again, a
	// scalar multiplication as costly as the signature. Setting D is the
	// one way to avoid that. Made here, a new key is made inside
	// secret.Do in secret mode, and so is the cache entry of it.
	key, _ := (*slot).(*ecdsa.PrivateKey)
	if key == nil {
		//lint:ignore SA1019 see above; D is wiped after each use
		key = &ecdsa.PrivateKey{PublicKey: *k.ecPub, D: new(big.Int)}
		*slot = key
	}
	//lint:ignore SA1019 see above; its words are reused, so SetBytes copies d nowhere else
	key.D.SetBytes(d)
	//lint:ignore SA1019 wiping the scalar set above
	defer wipeBig(key.D)
	// crypto/ecdsa reports a scalar out of range with an error matching no
	// sentinel; it is the entry's fault, so say so.
	//lint:ignore SA1019 checking the scalar set above
	if key.D.Sign() == 0 || key.D.Cmp(k.ecPub.Curve.Params().N) >= 0 {
		return nil, fmt.Errorf("%w: the entry holds an EC scalar out of range", ErrInvalidKey)
	}
	w := watchRand(rand)
	return stdSign(opts, w, func() ([]byte, error) { return key.Sign(w.reader(rand), digest, opts) })
}

// signRSA picks the key to sign with: *slot, a key of the pool (see
// keys), which it parses from der if it is nil. That key, checked against
// der, it returns for the caller to sign with once der is sealed again.
// An entry that no longer holds the key the pool's were parsed from is
// parsed for this signature alone, which signRSA makes, and the key
// wiped after it.
func (k *signer) signRSA(der []byte, slot *crypto.Signer, rand io.Reader, digest []byte, opts crypto.SignerOpts) (pooled *rsa.PrivateKey, sig []byte, err error) {
	if err := k.checkPSSSalt(opts); err != nil {
		return nil, nil, err
	}
	same := subtle.ConstantTimeCompare(keyCheck("RSA", der), k.rsaCheck) == 1
	rk, _ := (*slot).(*rsa.PrivateKey)
	if rk == nil || !same {
		key, err := parseSignerKey(der)
		if err != nil {
			return nil, nil, err
		}
		var ok bool
		if rk, ok = key.(*rsa.PrivateKey); !ok {
			wipeKey(key)
			return nil, nil, fmt.Errorf("%w: the entry no longer holds an RSA key", ErrInvalidKey)
		}
		if !same && !rk.PublicKey.Equal(k.pub) {
			// Another encoding of the key signs; another key would make
			// signatures that Public does not verify.
			wipeKey(rk)
			return nil, nil, fmt.Errorf("%w: the entry holds another RSA key than the Signer was made for", ErrInvalidKey)
		}
		if !same {
			defer wipeKey(rk)
			sig, err = signRSAWith(rk, rand, digest, opts)
			return nil, sig, err
		}
		*slot = rk
	}
	return rk, nil, nil
}

// signRSAWith signs digest with rk.
func signRSAWith(rk *rsa.PrivateKey, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss && (rand == nil || isNilPointer(rand)) {
		// crypto/rsa reads the salt from it, after checking opts: a nil
		// one would panic there.
		rand = nilRand{}
	}
	w := watchRand(rand)
	return stdSign(opts, w, func() ([]byte, error) { return rk.Sign(w.reader(rand), digest, opts) })
}

// checkPSSSalt refuses an RSA-PSS salt longer than the key leaves room
// for. crypto/rsa finds out only after it has allocated the salt and read
// it from rand: a SaltLength of 1<<30 cost a gigabyte and seconds of
// reading for the same error.
func (k *signer) checkPSSSalt(opts crypto.SignerOpts) error {
	o, ok := opts.(*rsa.PSSOptions)
	if !ok || o.SaltLength <= 0 || !o.Hash.Available() {
		return nil // crypto/rsa's own rules, at no cost
	}
	pub := k.pub.(*rsa.PublicKey)
	room := (pub.N.BitLen()-1+7)/8 - 2 - o.Hash.Size()
	if o.SaltLength > room {
		return fmt.Errorf("%w: a PSS salt of %d bytes, where a %d-bit key with %v leaves room for %d",
			ErrInvalidOption, o.SaltLength, pub.N.BitLen(), o.Hash, max(room, 0))
	}
	return nil
}

// keyCheck returns a value that tells keys of one kind apart without
// giving them away: HMAC-SHA256 keyed by the key, over a label naming the
// kind. Keying by the key puts it only in MAC's padded block, which is
// wiped, or, when it is longer than a block, in a hash's state, which
// hmacAppend clears; never in a buffer it leaves behind.
func keyCheck(kind string, key []byte) []byte {
	return hmacAppend(sha256.New(), sha256.New(), make([]byte, sha256.BlockSize), key,
		[]byte("memshuffle "+kind+" key check"), make([]byte, 0, sha256.Size))
}

// pkcs8Private returns the privateKey OCTET STRING of a PKCS#8
// PrivateKeyInfo (RFC 5208) or OneAsymmetricKey (RFC 5958), a slice of der.
func pkcs8Private(der []byte) (cryptobyte.String, error) {
	in := cryptobyte.String(der)
	var info, priv cryptobyte.String
	var version int
	if !in.ReadASN1(&info, asn1.SEQUENCE) || !in.Empty() ||
		!info.ReadASN1Integer(&version) || (version != 0 && version != 1) ||
		!info.SkipASN1(asn1.SEQUENCE) ||
		!info.ReadASN1(&priv, asn1.OCTET_STRING) {
		return nil, fmt.Errorf("%w: not PKCS#8", ErrInvalidKey)
	}
	return priv, nil
}

// oidEd25519 is the algorithm identifier of Ed25519 (RFC 8410).
var oidEd25519 = encoding_asn1.ObjectIdentifier{1, 3, 101, 112}

// pkcs8IsEd25519 reports whether der is a PKCS#8 key whose algorithm is
// Ed25519, whatever its version, parameters or trailing bytes: such a key
// is read by pkcs8Ed25519Seed alone, which refuses what RFC 8410 does not
// allow, and never by crypto/x509, whose parse copies the seed to the heap
// before it accepts or refuses the key.
func pkcs8IsEd25519(der []byte) bool {
	in := cryptobyte.String(der)
	var info, alg cryptobyte.String
	var version int
	var oid encoding_asn1.ObjectIdentifier
	return in.ReadASN1(&info, asn1.SEQUENCE) && info.ReadASN1Integer(&version) &&
		info.ReadASN1(&alg, asn1.SEQUENCE) && alg.ReadASN1ObjectIdentifier(&oid) &&
		oid.Equal(oidEd25519)
}

// pkcs8Supported reports false for PKCS#8 der whose algorithm is none a
// Signer takes (RSA, ECDSA, Ed25519), and true for anything else, DER of
// another form included.
func pkcs8Supported(der []byte) bool {
	in := cryptobyte.String(der)
	var info, alg cryptobyte.String
	var version int
	var oid encoding_asn1.ObjectIdentifier
	if !in.ReadASN1(&info, asn1.SEQUENCE) || !info.ReadASN1Integer(&version) ||
		!info.ReadASN1(&alg, asn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return true
	}
	return oid.Equal(oidEd25519) || oid.Equal(oidRSA) || oid.Equal(oidECPublicKey)
}

// The PKCS#8 algorithms of the keys a Signer takes besides Ed25519 (RFC
// 8017, RFC 5480).
var (
	oidRSA         = encoding_asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey = encoding_asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// pkcs8Ed25519Seed returns the seed in an Ed25519 PKCS#8 key (RFC 8410), a
// slice of der. The algorithm identifier must have no parameters.
func pkcs8Ed25519Seed(der []byte) ([]byte, error) {
	priv, err := pkcs8Private(der)
	if err != nil {
		return nil, err
	}
	in := cryptobyte.String(der)
	var info, alg cryptobyte.String
	if !in.ReadASN1(&info, asn1.SEQUENCE) || !info.SkipASN1(asn1.INTEGER) ||
		!info.ReadASN1(&alg, asn1.SEQUENCE) || !alg.SkipASN1(asn1.OBJECT_IDENTIFIER) || !alg.Empty() {
		return nil, fmt.Errorf("%w: an Ed25519 key with algorithm parameters", ErrInvalidKey)
	}
	var seed cryptobyte.String
	if !priv.ReadASN1(&seed, asn1.OCTET_STRING) || !priv.Empty() || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: not an Ed25519 key", ErrInvalidKey)
	}
	return seed, nil
}

// pkcs8ECScalar returns the private scalar in an EC PKCS#8 key (SEC 1,
// section C.4), a slice of der without leading zeros beyond size bytes.
func pkcs8ECScalar(der []byte, size int) ([]byte, error) {
	priv, err := pkcs8Private(der)
	if err != nil {
		return nil, err
	}
	var ec, d cryptobyte.String
	var version int
	if !priv.ReadASN1(&ec, asn1.SEQUENCE) ||
		!ec.ReadASN1Integer(&version) || version != 1 ||
		!ec.ReadASN1(&d, asn1.OCTET_STRING) {
		return nil, fmt.Errorf("%w: not an EC key", ErrInvalidKey)
	}
	for len(d) > size && d[0] == 0 {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > size {
		return nil, fmt.Errorf("%w: EC scalar of %d bytes", ErrInvalidKey, len(d))
	}
	return d, nil
}

// wipeBig zeroes x's words, also those past its length that arithmetic
// may have left, and sets it to 0.
func wipeBig(x *big.Int) {
	if x == nil {
		return
	}
	w := x.Bits()
	clear(w[:cap(w)])
	x.SetInt64(0)
}

// wipeKey wipes the private parts of a key crypto/x509 parsed, those that
// are reachable from it (NewSigner takes no multi-prime RSA keys, whose
// CRTValues it would miss). crypto/rsa's precomputed form for the FIPS module
// is not, and is left to the garbage collector (erased in secret mode).
func wipeKey(key any) {
	switch key := key.(type) {
	case ed25519.PrivateKey:
		Wipe(key)
	case *ecdsa.PrivateKey:
		//lint:ignore SA1019 wiping, the one use of D left
		wipeBig(key.D)
	case *rsa.PrivateKey:
		wipeBig(key.D)
		for _, p := range key.Primes {
			wipeBig(p)
		}
		pc := &key.Precomputed
		wipeBig(pc.Dp)
		wipeBig(pc.Dq)
		wipeBig(pc.Qinv)
	}
}

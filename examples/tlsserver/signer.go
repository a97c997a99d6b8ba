package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/memshuffle/memshuffle"
)

// The TLS private key is an Ed25519 seed: 32 bytes from which the signing
// key and the public key are both derived (RFC 8032, section 5.1.5). Only
// the seed is kept, in a Shuffler entry, encrypted at rest. It is generated
// or read straight into the entry, with no Go buffer on the way; signing
// needs a copy on the heap, and crypto/ed25519 keeps one of its own, as
// seedSigner explains.

// loadSeed returns an entry holding the seed: read from file if one is
// named, else freshly generated.
//
// The file holds exactly 32 raw bytes, the seed itself: no PEM, no base64,
// no trailing newline. Make one with
//
//	head -c 32 /dev/urandom > seed.key && chmod 600 seed.key
//
// or take the seed out of an OpenSSL key (its PKCS#8 DER form ends with it):
//
//	openssl genpkey -algorithm ed25519 -outform DER | tail -c 32 > seed.key
//
// Either way other processes (head, openssl, tail) handle the secret on its
// way to the file; generating the key inside the server (no -key) avoids
// that, at the price of a new key and certificate on every start.
func loadSeed(s *memshuffle.Shuffler, file string) (memshuffle.Handle, error) {
	if file == "" {
		return generateSeed(s)
	}
	return readSeed(s, file)
}

func generateSeed(s *memshuffle.Shuffler) (memshuffle.Handle, error) {
	h, err := memshuffle.Alloc[byte](s, ed25519.SeedSize)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	// crypto/rand writes straight into the rented entry: the seed exists
	// nowhere else, and is ciphertext again as soon as WithSlice returns.
	err = memshuffle.WithSlice(s, h, func(seed []byte) error {
		_, err := rand.Read(seed)
		return err
	})
	if err != nil {
		s.Free(h)
		return memshuffle.Handle{}, err
	}
	return h, nil
}

func readSeed(s *memshuffle.Shuffler, file string) (memshuffle.Handle, error) {
	f, err := os.Open(file)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	defer f.Close()
	// A regular file tells its size before anything is read: catch a PEM
	// file or a stray newline without reading a byte of it.
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() != ed25519.SeedSize {
		return memshuffle.Handle{}, fmt.Errorf("%s: %d bytes; want the raw %d-byte Ed25519 seed (not PEM, no newline)",
			file, fi.Size(), ed25519.SeedSize)
	}
	// ReadFrom reads from the *os.File straight into a rented entry: the
	// kernel copies the bytes from the page cache into the arena, and no Go
	// buffer holds them on the way. (The page cache keeps the file's pages
	// for a while; that copy belongs to the file, not to this process.)
	h, err := memshuffle.ReadFrom(s, f, ed25519.SeedSize)
	if err != nil {
		return memshuffle.Handle{}, fmt.Errorf("%s: %w", file, err)
	}
	// From a pipe or a device the size is not known beforehand: make sure
	// nothing follows the seed, which would mean some other format.
	var extra [1]byte
	if n, _ := f.Read(extra[:]); n > 0 {
		memshuffle.Wipe(extra[:])
		s.Free(h)
		return memshuffle.Handle{}, fmt.Errorf("%s: longer than %d bytes; want the raw Ed25519 seed", file, ed25519.SeedSize)
	}
	return h, nil
}

// seedSigner is a crypto.Signer whose private key is a seed kept in a
// Shuffler. tls.Certificate and x509.CreateCertificate accept any
// crypto.Signer as the private key, so neither ever sees the seed.
//
// What memshuffle protects while a signature is made, and what it cannot:
//
//   - The seed is decrypted only while it is copied out, under a view, and
//     is encrypted again at once.
//
//   - It is copied into key, the 64-byte ed25519.PrivateKey (seed ‖ public
//     key) that crypto/ed25519 signs with, and key is wiped as soon as the
//     signature is made. key has to be Go heap memory: crypto/ed25519 keeps
//     a cache under a weak pointer to a key's first byte, and the Go runtime
//     aborts the whole process ("fatal error: getWeakHandle on invalid
//     pointer") when that byte lies outside the Go heap, as a Shuffler entry
//     does. A key kept in an entry can never be passed to ed25519.Sign.
//
//   - That cache is the copy memshuffle cannot reach (crypto/ed25519 as of
//     Go 1.26). On the first signature crypto/ed25519 expands key into a precomputed private key (seed,
//     secret scalar, nonce prefix) on the heap, and keeps it for as long as
//     key is reachable: here, for the life of the process. It is never
//     wiped. Signing also leaves per-signature temporaries (the nonce among
//     them) on the goroutine's stack.
//
// Why one long-lived key rather than a fresh ed25519.NewKeyFromSeed per
// signature, wiped after use: each fresh key gets a cache entry of its own,
// and those entries are dropped, unwiped, only after the garbage collector
// finds the key unreachable, and stay readable until the memory is reused.
// Counted with "memshuffle scan" (Go 1.26, linux/amd64), a fresh key per
// signature left 1, 10 and 59 copies of the seed on the heap after 1, 10
// and 100 signatures and two garbage collections; one reused key leaves one
// copy, however many signatures.
//
// So for the TLS key, the Shuffler keeps the seed out of every Go buffer
// until the first signature, and that is the certificate's, at start-up.
// From then on one unwiped copy lives on the heap, where a core dump or a
// heap over-read can find it; main calls memshuffle.DisableCoreDumps for
// that reason. The API token (token.go) does not have this problem. To keep
// a signing key out of the process altogether, sign in a separate process
// or a hardware module; crypto.Signer is the seam for either.
type seedSigner struct {
	vault *vault
	seed  memshuffle.Handle

	// pub is the seed's own public key, derived once from the seed. It
	// must never be anything else: two signatures of one message under one
	// seed with two different public keys reveal the private key, which is
	// why ed25519.PrivateKey carries both halves together.
	pub ed25519.PublicKey

	mu  sync.Mutex         // guards key
	key ed25519.PrivateKey // seed ‖ pub while signing, zeros otherwise
}

// newSeedSigner derives the public key; Public returns it without touching
// the seed.
func newSeedSigner(v *vault, seed memshuffle.Handle) (*seedSigner, error) {
	k := &seedSigner{vault: v, seed: seed, key: make(ed25519.PrivateKey, ed25519.PrivateKeySize)}
	err := v.view(seed, func(seed []byte) error {
		priv := ed25519.NewKeyFromSeed(seed)
		k.pub = priv.Public().(ed25519.PublicKey) // a copy of priv's second half
		memshuffle.Wipe(priv)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Public returns the ed25519.PublicKey.
func (k *seedSigner) Public() crypto.PublicKey { return k.pub }

// Sign signs message as ed25519.PrivateKey.Sign does: opts is crypto.Hash(0)
// for plain Ed25519, which TLS and X.509 use, or an *ed25519.Options. It is
// safe to call from many goroutines; signatures are made one at a time.
func (k *seedSigner) Sign(rand io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.vault.view(k.seed, func(seed []byte) error {
		copy(k.key, seed)
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer memshuffle.Wipe(k.key)
	copy(k.key[ed25519.SeedSize:], k.pub)
	return k.key.Sign(rand, message, opts)
}

// selfSigned makes a certificate for signer's public key, signed by signer
// itself, valid for 30 days from now for localhost, the loopback addresses
// and the host of addr. It is public; only the key behind it is secret.
func selfSigned(signer crypto.Signer, addr string, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "memshuffle tlsserver example"},
		NotBefore:             now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && host != "localhost" {
		if ip := net.ParseIP(host); ip == nil {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		} else if !ip.IsLoopback() && !ip.IsUnspecified() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	// CreateCertificate calls signer.Sign, and then checks the signature
	// against signer.Public(): a first test of the Signer at every start.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

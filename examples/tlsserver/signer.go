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
	"time"

	"github.com/memshuffle/memshuffle"
)

// The TLS private key lives in a Shuffler entry as PKCS#8 DER, the form
// memshuffle.NewSigner signs with. It is either generated in place in the
// entry or read from a key file by memshuffle.ReadPrivateKey; the Signer
// parses it out of a view of the entry for each signature.

// ed25519PKCS8Prefix is the DER of an Ed25519 PKCS#8 PrivateKeyInfo (RFC
// 8410, section 7) up to the 32-byte seed that ends it: version 0, the
// algorithm identifier 1.3.101.112, and the OCTET STRING headers.
var ed25519PKCS8Prefix = []byte{
	0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
	0x04, 0x22, 0x04, 0x20,
}

// loadKey returns an entry holding the private key as PKCS#8 DER: read from
// file if one is named, else a new Ed25519 key.
//
// The file holds a private key in PEM or DER: PKCS#8, PKCS#1 (RSA) or SEC 1
// (EC); Ed25519, ECDSA on P-256, P-384 or P-521, or RSA of 2048 to 4096
// bits. Make one with
//
//	openssl genpkey -algorithm ed25519 -out tls.key && chmod 600 tls.key
//
// openssl handles the key on its way to the file; generating the key inside
// the server (no -key) avoids that, at the price of a new key and
// certificate on every start.
func loadKey(s *memshuffle.Shuffler, file string) (memshuffle.Handle, error) {
	if file == "" {
		return generateKey(s)
	}
	f, err := os.Open(file)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	defer f.Close()
	// ReadPrivateKey reads the file into a buffer of its own, parses it and
	// stores the key as PKCS#8 DER in a new entry; it wipes its buffers,
	// and in secret mode what encoding/pem and crypto/x509 copied is erased
	// too. (The page cache keeps the file's pages for a while; that copy
	// belongs to the file, not to this process.)
	h, err := memshuffle.ReadPrivateKey(s, f)
	if err != nil {
		return memshuffle.Handle{}, fmt.Errorf("%s: %w", file, err)
	}
	return h, nil
}

// generateKey writes a new Ed25519 key, as PKCS#8 DER, straight into a
// rented entry: the seed comes from crypto/rand into the entry and exists
// nowhere else.
func generateKey(s *memshuffle.Shuffler) (memshuffle.Handle, error) {
	h, err := memshuffle.Alloc[byte](s, len(ed25519PKCS8Prefix)+ed25519.SeedSize)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	err = memshuffle.BorrowSlice(s, h, func(der []byte) error {
		n := copy(der, ed25519PKCS8Prefix)
		_, err := rand.Read(der[n:])
		return err
	})
	if err != nil {
		s.Free(h)
		return memshuffle.Handle{}, err
	}
	return h, nil
}

// vaultSigner is memshuffle.NewSigner's Signer with one addition: each
// signature holds the vault's read lock, as every other view here does, so
// that Close waits for a signature in progress.
//
// What stays behind after a signature: in a default build, crypto/ed25519
// keeps the key it expands (seed, secret scalar, nonce prefix) in a cache
// on the Go heap, which the Signer holds to one copy for the life of the
// process by signing with one key buffer; ECDSA and RSA keys leave their
// parsed copies on the heap until the memory is reused. Built with
// GOEXPERIMENT=runtimesecret, each signature runs inside secret.Do and all
// of that is erased once unreachable. README.md has the counts.
type vaultSigner struct {
	vault *vault
	crypto.Signer
}

func newVaultSigner(v *vault, key memshuffle.Handle) (*vaultSigner, error) {
	sg, err := memshuffle.NewSigner(v.s, key)
	if err != nil {
		return nil, err
	}
	return &vaultSigner{vault: v, Signer: sg}, nil
}

// Sign is the Signer's Sign under the vault's read lock. It is safe to call
// from many goroutines.
func (k *vaultSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.vault.mu.RLock()
	defer k.vault.mu.RUnlock()
	return k.Signer.Sign(rand, digest, opts)
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

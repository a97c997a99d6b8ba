package memshuffle

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// maxKeyFile bounds what ReadPrivateKey reads: an RSA-4096 key in PEM is
// about 3.3 KB.
const maxKeyFile = 64 << 10

// ReadPrivateKey reads a private key from r, in PEM or DER, and stores it
// in a new entry as PKCS#8 DER, the form NewSigner takes. It accepts
// PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") and SEC 1 ("EC PRIVATE
// KEY") keys of the kinds NewSigner supports; other PEM blocks before the
// key (an "EC PARAMETERS" block, say) are skipped, and encrypted PEM is
// refused. Anything else, or input of 64 KiB or more, fails with
// ErrInvalidKey.
//
// The buffers ReadPrivateKey owns (what it read, the decoded PEM block, the
// DER it stores, the parsed key's numbers) are wiped before it returns,
// also on failure. encoding/pem and crypto/x509 make copies of their own
// on the way that it cannot reach; in secret mode (see SecretMode) the
// whole import runs inside secret.Do, so those are erased too once
// unreachable. Whatever r keeps (a bufio.Reader's buffer) is up to r.
func ReadPrivateKey(s *Shuffler, r io.Reader) (h Handle, err error) {
	if r == nil {
		return Handle{}, fmt.Errorf("%w: nil io.Reader", ErrNilArgument)
	}
	runSecret(func() { h, err = readPrivateKey(s, r) })
	return h, err
}

func readPrivateKey(s *Shuffler, r io.Reader) (Handle, error) {
	in, err := readAllWiping(r, maxKeyFile)
	defer Wipe(in)
	if err != nil {
		return Handle{}, err
	}
	der := in
	if bytes.Contains(in, []byte("-----BEGIN")) {
		der = nil
		for rest := in; der == nil; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				return Handle{}, fmt.Errorf("%w: no private key in the PEM input", ErrInvalidKey)
			}
			defer Wipe(block.Bytes)
			switch block.Type {
			case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
				if _, ok := block.Headers["DEK-Info"]; ok {
					return Handle{}, fmt.Errorf("%w: encrypted PEM", ErrInvalidKey)
				}
				der = block.Bytes
			case "ENCRYPTED PRIVATE KEY":
				return Handle{}, fmt.Errorf("%w: encrypted PKCS#8", ErrInvalidKey)
			}
		}
	}
	key, err := parsePrivateKey(der)
	if err != nil {
		return Handle{}, err
	}
	defer wipeKey(key)
	if err := new(signer).setPublic(key); err != nil {
		return Handle{}, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Handle{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return CopyFrom(s, p8) // wipes p8
}

// parsePrivateKey parses der as PKCS#8, then PKCS#1, then SEC 1.
func parsePrivateKey(der []byte) (any, error) {
	if key, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return key, nil
	}
	if key, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return key, nil
	}
	key, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: neither PKCS#8, PKCS#1 nor SEC 1", ErrInvalidKey)
	}
	return key, nil
}

// readAllWiping reads r to the end, up to limit bytes, wiping every buffer
// it outgrows. On error the bytes read so far are returned for wiping.
func readAllWiping(r io.Reader, limit int) ([]byte, error) {
	b := make([]byte, 0, 4<<10)
	for {
		if len(b) == cap(b) {
			if len(b) >= limit {
				return b, fmt.Errorf("%w: more than %d bytes", ErrInvalidKey, limit)
			}
			nb := make([]byte, len(b), min(2*cap(b), limit))
			copy(nb, b)
			Wipe(b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, fmt.Errorf("memshuffle: reading a private key: %w", err)
		}
	}
}

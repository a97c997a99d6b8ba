package memshuffle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

// failingReader fails every read with errRandFailed.
type failingReader struct{}

var errRandFailed = errors.New("the random source failed")

func (failingReader) Read([]byte) (int, error) { return 0, errRandFailed }

// panickingReader panics on every read.
type panickingReader struct{}

func (panickingReader) Read([]byte) (int, error) { panic("no randomness") }

// TestSignerRandErrors: where crypto/ecdsa and crypto/rsa read the
// caller's rand (under GODEBUG=cryptocustomrand=1), its error is passed on
// and its panic is ErrPanicked, not blamed on the opts; crypto/rand.Reader
// and nil still sign.
func TestSignerRandErrors(t *testing.T) {
	inChildEnv(t, []string{"GODEBUG=cryptocustomrand=1"}, func(t *testing.T) {
		s := newTest(t)
		eck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		rsak, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("message"))
		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		for _, tc := range []struct {
			name string
			key  any
			opts crypto.SignerOpts
		}{
			{"ECDSA", eck, crypto.SHA256},
			{"RSA-PSS", rsak, pss},
		} {
			sg := newTestSigner(t, s, tc.key)
			for _, rc := range []struct {
				name string
				rand io.Reader
				want error
			}{
				{"crypto/rand", rand.Reader, nil},
				{"failing", failingReader{}, errRandFailed},
				{"panicking", panickingReader{}, ErrPanicked},
			} {
				_, err := sg.Sign(rc.rand, digest[:], tc.opts)
				if (rc.want == nil) != (err == nil) || !errors.Is(err, rc.want) || (rc.want != nil && errors.Is(err, ErrInvalidOption)) {
					t.Errorf("%s with a %s rand: %v, want %v", tc.name, rc.name, err, rc.want)
				}
			}
		}
	})
}

package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/memshuffle/memshuffle"
)

// minKeySize is RFC 7518's floor for an HS256 key (section 3.2): a key
// shorter than the hash output is refused.
const minKeySize = sha256.Size

// maxKeySize bounds the key file; longer HMAC keys add nothing.
const maxKeySize = 1024

var (
	errMalformed = errors.New("malformed token")
	errAlg       = errors.New("token is not HS256")
	errSignature = errors.New("signature does not match")
	errExpired   = errors.New("token expired")
)

// claims are the registered claims this example issues and checks (RFC
// 7519, section 4.1).
type claims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat,omitempty"`
	Exp int64  `json:"exp,omitempty"`
}

// hs256 issues and verifies tokens with a key held in a Shuffler. It is
// safe for concurrent use: MAC reads the key through a shared view.
type hs256 struct {
	s   *memshuffle.Shuffler
	key memshuffle.Handle
	now func() time.Time
}

// loadKey reads the HMAC key from file straight into an entry: the file's
// raw bytes are the key, 32 to 1024 of them.
func loadKey(s *memshuffle.Shuffler, file string) (memshuffle.Handle, error) {
	f, err := os.Open(file)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return memshuffle.Handle{}, err
	}
	if n := fi.Size(); !fi.Mode().IsRegular() || n < minKeySize || n > maxKeySize {
		return memshuffle.Handle{}, fmt.Errorf("%s: want a regular file of %d to %d raw bytes", file, minKeySize, maxKeySize)
	}
	// ReadFrom reads from the file into the rented entry: no Go buffer
	// holds the key on the way.
	return memshuffle.ReadFrom(s, f, int(fi.Size()))
}

// b64 is strict: a token whose last character differs only in the bits
// past the end of its bytes decodes to the same bytes, and would verify
// as another string than the one issued.
var b64 = base64.RawURLEncoding.Strict()

// fixedHeader is the JOSE header of every token issued here.
var fixedHeader = b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// issue returns a signed token for c.
func (j *hs256) issue(c claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := fixedHeader + "." + b64.EncodeToString(payload)
	// MAC computes HMAC-SHA256 from a view of the key; neither the key nor
	// its padded blocks get a copy that outlives the call.
	mac, err := memshuffle.MAC(j.s, j.key, sha256.New, []byte(input), make([]byte, 0, sha256.Size))
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(mac), nil
}

// verify checks the token's algorithm, signature and expiry, in that order,
// and returns its claims.
func (j *hs256) verify(token string) (claims, error) {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errMalformed
	}
	hdr, err := b64.DecodeString(parts[0])
	if err != nil {
		return c, errMalformed
	}
	var h struct {
		Alg  string   `json:"alg"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		return c, errMalformed
	}
	// Only HS256: never "none", never an algorithm the token chooses.
	if h.Alg != "HS256" || len(h.Crit) > 0 {
		return c, errAlg
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return c, errMalformed
	}
	input := token[:len(parts[0])+1+len(parts[1])]
	mac, err := memshuffle.MAC(j.s, j.key, sha256.New, []byte(input), make([]byte, 0, sha256.Size))
	if err != nil {
		return c, err
	}
	// hmac.Equal takes the same time wherever the first difference is.
	if !hmac.Equal(sig, mac) {
		return c, errSignature
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return c, errMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil {
		return c, errMalformed
	}
	if c.Exp != 0 && !j.now().Before(time.Unix(c.Exp, 0)) {
		return c, errExpired
	}
	return c, nil
}

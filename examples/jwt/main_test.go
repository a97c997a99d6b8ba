package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle"
)

var testNow = func() time.Time { return time.Unix(1_700_000_000, 0) }

// jwt runs the command with args and returns what it printed.
func jwt(t *testing.T, now func() time.Time, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut, now)
	return strings.TrimSpace(out.String()), err
}

func TestIssueVerify(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	if _, err := jwt(t, testNow, "newkey", key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Size() != 32 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	// Windows has no Unix permission bits: os.Stat reports 0666 there.
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := jwt(t, testNow, "newkey", key); err == nil {
		t.Fatal("newkey overwrote an existing file")
	}
	tok, err := jwt(t, testNow, "issue", "-key", key, "-sub", "alice", "-ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt(t, testNow, "verify", "-key", key, tok)
	if err != nil {
		t.Fatal(err)
	}
	var c claims
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Sub != "alice" || c.Exp != testNow().Add(time.Hour).Unix() {
		t.Fatalf("verify printed %q (%v)", out, err)
	}

	later := func() time.Time { return testNow().Add(2 * time.Hour) }
	if _, err := jwt(t, later, "verify", "-key", key, tok); !errors.Is(err, errExpired) {
		t.Errorf("after expiry: %v, want errExpired", err)
	}
	parts := strings.Split(tok, ".")
	forged, _ := json.Marshal(claims{Sub: "root", Exp: c.Exp})
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
	sig := []byte(parts[2])
	// Another base64url character, so that the signature still decodes.
	if sig[3] == 'A' {
		sig[3] = 'B'
	} else {
		sig[3] = 'A'
	}
	// The signature's last character with only its unused low bits
	// changed: the same bytes, another token.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := []byte(parts[2])
	last[len(last)-1] = alphabet[strings.IndexByte(alphabet, last[len(last)-1])^1]
	other := filepath.Join(t.TempDir(), "other")
	jwt(t, testNow, "newkey", other)
	for name, tc := range map[string]struct {
		key, tok string
		want     error
	}{
		"changed payload":                 {key, parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2], errSignature},
		"changed signature":               {key, parts[0] + "." + parts[1] + "." + string(sig), errSignature},
		"alg none":                        {key, none + "." + parts[1] + ".", errAlg},
		"other key":                       {other, tok, errSignature},
		"two parts":                       {key, parts[0] + "." + parts[1], errMalformed},
		"bad base64":                      {key, "!!." + parts[1] + "." + parts[2], errMalformed},
		"signature's unused bits changed": {key, parts[0] + "." + parts[1] + "." + string(last), errMalformed},
	} {
		if _, err := jwt(t, testNow, "verify", "-key", tc.key, tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestRFC7515 verifies the HS256 example of RFC 7515, appendix A.1.
func TestRFC7515(t *testing.T) {
	k, _ := base64.RawURLEncoding.DecodeString("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, k, 0o600)
	const tok = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." +
		"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ." +
		"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	before := func() time.Time { return time.Unix(1300819379, 0) }
	if _, err := jwt(t, before, "verify", "-key", key, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := jwt(t, testNow, "verify", "-key", key, tok); !errors.Is(err, errExpired) {
		t.Fatalf("%v, want errExpired", err)
	}
}

// TestIssueRefusesNonPositiveTTL: a token's lifetime must be positive.
// -ttl 0 or a negative -ttl issued a token verify already refused as
// expired, and a -ttl that put exp at the Unix epoch left exp out of the
// token (omitempty), which verify then accepted forever.
func TestIssueRefusesNonPositiveTTL(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	if _, err := jwt(t, testNow, "newkey", key); err != nil {
		t.Fatal(err)
	}
	epoch := fmt.Sprintf("%ds", -testNow().Unix())
	for _, ttl := range []string{"0s", "-1h", epoch} {
		if tok, err := jwt(t, testNow, "issue", "-key", key, "-sub", "alice", "-ttl", ttl); err == nil {
			t.Errorf("-ttl %s: issued %s", ttl, tok)
		}
	}
}

func TestKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, make([]byte, 31), 0o600)
	for name, args := range map[string][]string{
		"missing":    {"issue", "-key", filepath.Join(dir, "none"), "-sub", "a"},
		"short":      {"issue", "-key", short, "-sub", "a"},
		"directory":  {"issue", "-key", dir, "-sub", "a"},
		"no key":     {"issue", "-sub", "a"},
		"no command": {},
	} {
		if _, err := jwt(t, testNow, args...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestConcurrentVerify verifies from many goroutines at once, while the
// Shuffler shuffles; run with -race.
func TestConcurrentVerify(t *testing.T) {
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key, _ := memshuffle.CopyFrom(s, bytes.Repeat([]byte{1}, 32))
	j := &hs256{s: s, key: key, now: testNow}
	tok, err := j.issue(claims{Sub: "x"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			s.Shuffle()
		}
	}()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var err error
			for range 200 {
				if _, err = j.verify(tok); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

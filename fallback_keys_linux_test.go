package memshuffle

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// noAESNIEnv marks the process TestFallbackOldKeyGone starts again with
// AES-NI hidden from the runtime (GODEBUG=cpu.aes=off), so that both
// internal/aesctr and crypto/aes take the path of a CPU without it, as on
// 386 and every architecture but amd64.
const noAESNIEnv = "MEMSHUFFLE_TEST_NOAESNI"

// fallbackKeyPatterns gives a key and salt outside the Go heap and
// patterns for the sixteen-byte blocks of the key schedule crypto/aes
// builds from it where the CPU has no AES-NI, as that schedule lies in
// memory (32-bit words in the machine's byte order, not the key's).
func fallbackKeyPatterns(t *testing.T) (*[32]byte, *[8]byte, []*memscan.Pattern) {
	t.Helper()
	key, salt, _ := offHeapKey(t)
	b, err := aes.NewCipher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	// The encryption schedule is in the Block (on s390x, behind a pointer
	// in it); its first two blocks are the key, word by word.
	var words [32]byte
	for i := 0; i < len(words); i += 4 {
		binary.NativeEndian.PutUint32(words[i:], binary.BigEndian.Uint32(key[i:]))
	}
	var enc []byte
	for _, m := range ctr.Reach(b) {
		if i := bytes.Index(m, words[:]); i >= 0 && len(m)-i >= 15*16 {
			enc = m[i : i+15*16]
		}
	}
	if enc == nil {
		t.Fatalf("crypto/aes's schedule is not where the test looks for it")
	}
	ps := blockPatterns(t, enc)
	ctr.WipeObject(b)
	return key, salt, ps
}

// TestFallbackOldKeyGone: without AES-NI the AES ciphers are crypto/aes's,
// whose key schedule is on the Go heap, and entries over 128 bytes go
// through crypto/cipher's CTR, which copies the schedule. Once RotateKey
// has moved every entry to a new key, and the collector has run, nothing
// of the old schedule may be left in the process. It runs in a process
// with AES-NI hidden, so that CI on amd64 takes the path of 386, arm64 and
// the rest.
func TestFallbackOldKeyGone(t *testing.T) {
	if raceBuild {
		t.Skip("scans the whole process, which takes minutes under -race")
	}
	if os.Getenv(noAESNIEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), noAESNIEnv+"=1", "GODEBUG=cpu.aes=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("with AES-NI hidden: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "--- SKIP") {
			// A pass that searched nothing.
			t.Fatalf("the child skipped:\n%s", out)
		}
		t.Logf("with AES-NI hidden:\n%s", out)
		return
	}
	if aesctr.Supported() {
		t.Skip("GODEBUG=cpu.aes=off did not hide AES-NI")
	}
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithCipher(c), WithShards(2))
			key, salt, ps := fallbackKeyPatterns(t)
			if err := s.RotateKey(key, salt); err != nil {
				t.Fatal(err)
			}
			useEntries(t, s)
			if n := hitsOf(t, ps); n == 0 {
				t.Fatal("the key in use is not found: the scan finds nothing")
			}
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			runtime.GC()
			if n := hitsOf(t, ps); n != 0 {
				t.Errorf("%d blocks of the old key's schedule left after the rotation", n)
			}
		})
	}
}

// useEntries makes entries of 200 bytes to over 2 KiB, past the 128 that
// the CTR cipher encrypts block by block, and rents and returns each a
// few times.
func useEntries(t *testing.T, s *Shuffler) {
	t.Helper()
	var hs []Handle
	for i := range 8 {
		h, err := Random(s, 200+i*300)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for range 3 {
		for _, h := range hs {
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
		}
	}
}

package memshuffle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// racePattern is what the stress tests' entries hold, so a scan can
// find what survived a Purge.
var racePattern = bytes.Repeat([]byte("PLAINTEXT-RACES!"), 4) // 64 bytes

// patternReader yields racePattern, a few bytes per Read, yielding the
// processor between reads so Close or Purge lands in the middle, and
// returns io.EOF with the last bytes, as many readers do.
type patternReader struct{ off int }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off == len(racePattern) {
		return 0, io.EOF
	}
	runtime.Gosched()
	n := copy(p[:min(len(p), 7)], racePattern[r.off:])
	r.off += n
	if r.off == len(racePattern) {
		return n, io.EOF
	}
	return n, nil
}

// slowWriter reads what it is given twice, yielding in between.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	var x byte
	for _, c := range p {
		x |= c
	}
	runtime.Gosched()
	for _, c := range p {
		x |= c
	}
	runtime.KeepAlive(x)
	return len(p), nil
}

// A raceOp is one call the stress tests run in a loop.
type raceOp struct {
	name string
	run  func(s *Shuffler, h, key Handle, sig crypto.Signer, ecsig crypto.Signer, aead *AEAD) error
}

var pinnedOps = []raceOp{
	{"Random", func(s *Shuffler, _, _ Handle, _, _ crypto.Signer, _ *AEAD) error { _, err := Random(s, 64); return err }},
	{"Clone", func(s *Shuffler, h, _ Handle, _, _ crypto.Signer, _ *AEAD) error {
		c, err := Clone(s, h)
		if err == nil {
			s.Free(c)
		}
		return err
	}},
	{"Equal", func(s *Shuffler, h, _ Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := Equal(s, h, racePattern)
		return err
	}},
	{"EqualEntries", func(s *Shuffler, h, key Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := EqualEntries(s, h, key)
		return err
	}},
	{"MAC", func(s *Shuffler, _, key Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := MAC(s, key, sha256.New, []byte("msg"), nil)
		return err
	}},
	{"CopyFrom", func(s *Shuffler, _, _ Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := CopyFrom(s, bytes.Clone(racePattern))
		return err
	}},
}

// adapterOps sign, seal and open; they are apart from pinnedOps because
// TestAdaptersRacePurge checks what they report under Purge. What one
// returns with no error must be right: a signature that verifies under
// the key's public half, the plaintext sealed. One made from a key Purge
// wiped meanwhile is errWrongResult, which no test accepts.
var adapterOps = []raceOp{
	{"AEAD", func(s *Shuffler, _, _ Handle, _, _ crypto.Signer, a *AEAD) error {
		ct, err := a.Seal(nil, make([]byte, 12), []byte("hello"), nil)
		if err != nil {
			return err
		}
		pt, err := a.Open(nil, make([]byte, 12), ct, nil)
		if err == nil && string(pt) != "hello" {
			return fmt.Errorf("%w: opened %q, sealed %q", errWrongResult, pt, "hello")
		}
		return err
	}},
	{"SignEd25519", func(s *Shuffler, _, _ Handle, sig, _ crypto.Signer, _ *AEAD) error {
		msg := []byte("msg")
		out, err := sig.Sign(nil, msg, crypto.Hash(0))
		if err == nil && !ed25519.Verify(sig.Public().(ed25519.PublicKey), msg, out) {
			return fmt.Errorf("%w: an Ed25519 signature that does not verify", errWrongResult)
		}
		return err
	}},
	{"SignECDSA", func(s *Shuffler, _, _ Handle, _, sig crypto.Signer, _ *AEAD) error {
		d := sha256.Sum256([]byte("msg"))
		out, err := sig.Sign(rand.Reader, d[:], crypto.SHA256)
		if err == nil && !ecdsa.VerifyASN1(sig.Public().(*ecdsa.PublicKey), d[:], out) {
			return fmt.Errorf("%w: an ECDSA signature that does not verify", errWrongResult)
		}
		return err
	}},
}

// errWrongResult is an adapter's result that is wrong, with no error.
var errWrongResult = errors.New("a wrong result with no error")

var readWriteOps = []raceOp{
	{"ReadAll", func(s *Shuffler, _, _ Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := ReadAll(s, &patternReader{}, 1<<10)
		return err
	}},
	{"ReadUntil", func(s *Shuffler, _, _ Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := ReadUntil(s, &patternReader{}, '\n', 1<<10)
		return err
	}},
	{"WriteTo", func(s *Shuffler, h, _ Handle, _, _ crypto.Signer, _ *AEAD) error {
		_, err := WriteTo(s, h, slowWriter{})
		return err
	}},
}

// stressEnd runs ops in loops on fresh Shufflers, with a goroutine calling
// runtime.GC, and ends each Shuffler with end after a short while. Every
// op must end with nil, ErrClosed, ErrBusy or ErrInvalidHandle. check runs
// after all ops of a round have returned.
func stressEnd(t *testing.T, ops []raceOp, rounds int, end func(*Shuffler), check func(*Shuffler)) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	collectInLoop(t, 0)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edk)
	eck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(eck)
	for range rounds {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		h, _ := CopyFrom(s, bytes.Clone(racePattern))
		key, _ := CopyFrom(s, bytes.Clone(racePattern[:32]))
		edh, _ := CopyFrom(s, bytes.Clone(edDER))
		ech, _ := CopyFrom(s, bytes.Clone(ecDER))
		sig, err := NewSigner(s, edh)
		if err != nil {
			t.Fatal(err)
		}
		ecsig, err := NewSigner(s, ech)
		if err != nil {
			t.Fatal(err)
		}
		aead, err := NewAEAD(s, key)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var calls atomic.Int64
		for _, op := range ops {
			for range 2 {
				wg.Go(func() {
					for {
						err := op.run(s, h, key, sig, ecsig, aead)
						calls.Add(1)
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil && !errors.Is(err, ErrBusy) && !errors.Is(err, ErrInvalidHandle) {
							t.Errorf("%s: %v", op.name, err)
							return
						}
					}
				})
			}
		}
		time.Sleep(5 * time.Millisecond)
		end(s)
		wg.Wait()
		check(s)
		s.Close()
	}
}

// TestCloseRacesPinnedCalls: Random, Clone, Equal, EqualEntries, MAC and
// CopyFrom, which borrow through the pinned path, survive Close racing
// them.
func TestCloseRacesPinnedCalls(t *testing.T) {
	inChild(t, func(t *testing.T) {
		stressEnd(t, pinnedOps, 20, func(s *Shuffler) { s.Close() }, func(*Shuffler) {})
	})
}

// TestPurgeRacesPinnedCalls: after a Purge racing the pinned
// calls, no arena holds the entries' plaintext.
func TestPurgeRacesPinnedCalls(t *testing.T) {
	stressEnd(t, pinnedOps, 20, func(s *Shuffler) { s.Purge() }, func(s *Shuffler) {
		if arenasHold(s, racePattern[:32]) {
			t.Error("plaintext left after Purge")
		}
	})
}

package memshuffle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"
)

// countingReader counts the calls to Read of the reader it wraps.
type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// TestReadersRefuseClosedUnread: every function that reads a secret from an
// io.Reader into a new entry answers ErrClosed for a Shuffler that is
// closed, purged or nil without reading anything, even input it could
// parse. ReadPrivateKey used to read and parse the key, copying it into
// the Go heap, and to fail only when storing it.
func TestReadersRefuseClosedUnread(t *testing.T) {
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	closed, purged := newTest(t), newTest(t)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := purged.Purge(); err != nil {
		t.Fatal(err)
	}
	readers := map[string]func(*Shuffler, io.Reader) (Handle, error){
		"ReadAll":        func(s *Shuffler, r io.Reader) (Handle, error) { return ReadAll(s, r, 1<<10) },
		"ReadFrom":       func(s *Shuffler, r io.Reader) (Handle, error) { return ReadFrom(s, r, 16) },
		"ReadUntil":      func(s *Shuffler, r io.Reader) (Handle, error) { return ReadUntil(s, r, '\n', 1<<10) },
		"ReadPrivateKey": ReadPrivateKey,
	}
	for sname, s := range map[string]*Shuffler{"closed": closed, "purged": purged, "nil": nil} {
		for name, read := range readers {
			r := &countingReader{r: bytes.NewReader(key)}
			h, err := read(s, r)
			if !errors.Is(err, ErrClosed) || !h.IsZero() {
				t.Errorf("%s on a %s Shuffler: %v, %v; want ErrClosed", name, sname, h, err)
			}
			if r.calls != 0 {
				t.Errorf("%s on a %s Shuffler read its input (%d calls)", name, sname, r.calls)
			}
		}
	}
}

// TestAEADArgumentsBeforeLength: Open of a message too short to hold a tag
// still names the caller's mistake, a nil *AEAD or a nonce of the wrong
// size, as Seal does; it used to answer ErrAuthFailed, as for a forgery.
func TestAEADArgumentsBeforeLength(t *testing.T) {
	s := newTest(t)
	k, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAEAD(s, k)
	if err != nil {
		t.Fatal(err)
	}
	var nilAEAD *AEAD
	nonce := make([]byte, 12)
	dst := []byte("kept")
	for _, tc := range []struct {
		name  string
		a     *AEAD
		nonce []byte
		ct    []byte
		want  error
	}{
		{"nil AEAD, empty message", nilAEAD, nonce, nil, ErrNilArgument},
		{"nil AEAD, short message", nilAEAD, nonce, []byte{1, 2, 3}, ErrNilArgument},
		{"nil AEAD, bad nonce, short message", nilAEAD, nonce[:5], []byte{1}, ErrNilArgument},
		{"short nonce, short message", a, nonce[:5], []byte{1}, ErrInvalidSize},
		{"long nonce, empty message", a, make([]byte, 13), nil, ErrInvalidSize},
		{"short message", a, nonce, []byte{1}, ErrAuthFailed},
	} {
		got, err := tc.a.Open(dst, tc.nonce, tc.ct, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("Open, %s: %v, want %v", tc.name, err, tc.want)
		}
		if string(got) != "kept" {
			t.Errorf("Open, %s: dst became %q", tc.name, got)
		}
	}
	if _, err := nilAEAD.Seal(nil, nonce[:5], nil, nil); !errors.Is(err, ErrNilArgument) {
		t.Errorf("Seal of a nil *AEAD with a bad nonce: %v, want ErrNilArgument", err)
	}
}

// TestEveryCallRefusesBadState calls every exported function that takes a
// Shuffler on Shufflers that are closed, purged, nil, zero and copied, which must
// answer ErrClosed, and every one that takes a Handle with Handles that
// are zero, another Shuffler's, freed, or forged in each of their fields,
// which must answer ErrInvalidHandle. None may panic, and the entries of
// the open Shuffler must be intact and its invariants hold afterwards.
func TestEveryCallRefusesBadState(t *testing.T) {
	newWith := func() (*Shuffler, Handle) {
		s := newTest(t)
		h, err := CopyFrom(s, bytes.Repeat([]byte{0x5a}, 32))
		if err != nil {
			t.Fatal(err)
		}
		return s, h
	}
	other, foreign := newWith()
	closed, inClosed := newWith()
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	purged, inPurged := newWith()
	if err := purged.Purge(); err != nil {
		t.Fatal(err)
	}
	s, live := newWith()
	freed, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Free(freed); err != nil {
		t.Fatal(err)
	}
	forge := func(change func(*Handle)) Handle { h := live; change(&h); return h }

	type target struct {
		name string
		s    *Shuffler
		h    Handle
		want error
	}
	targets := []target{
		{"closed", closed, inClosed, ErrClosed},
		{"purged", purged, inPurged, ErrClosed},
		{"nil", nil, foreign, ErrClosed},
		{"zero", &Shuffler{}, foreign, ErrClosed},
		{"a copy of an open one", copyOf(s), live, ErrClosed},
	}
	for name, h := range map[string]Handle{
		"zero Handle":        {},
		"another's Handle":   foreign,
		"freed Handle":       freed,
		"Handle of closed":   inClosed,
		"shard out of range": forge(func(h *Handle) { h.id |= uint64(maxShards-1) << (slotBits + genBits) }),
		"slot out of range":  forge(func(h *Handle) { h.id |= uint64(1<<slotBits-1) << genBits }),
		"other generation":   forge(func(h *Handle) { h.id ^= 1 }),
		"owner zero":         forge(func(h *Handle) { h.owner = 0 }),
	} {
		targets = append(targets, target{"open, " + name, s, h, ErrInvalidHandle})
	}

	ctx := context.Background()
	noop := func([]byte) error { return nil }
	// Calls that take a Handle.
	withHandle := map[string]func(*Shuffler, Handle) error{
		"Rent":             func(s *Shuffler, h Handle) error { _, err := Rent[byte](s, h); return err },
		"RentSlice":        func(s *Shuffler, h Handle) error { _, err := RentSlice[byte](s, h); return err },
		"RentSliceContext": func(s *Shuffler, h Handle) error { _, err := RentSliceContext[byte](ctx, s, h); return err },
		"View":             func(s *Shuffler, h Handle) error { _, err := View[byte](s, h); return err },
		"ViewSliceContext": func(s *Shuffler, h Handle) error { _, err := ViewSliceContext[byte](ctx, s, h); return err },
		"BorrowSlice":      func(s *Shuffler, h Handle) error { return BorrowSlice(s, h, noop) },
		"BorrowViewContext": func(s *Shuffler, h Handle) error {
			return BorrowViewContext(ctx, s, h, func(*byte) error { return nil })
		},
		"Return":       func(s *Shuffler, h Handle) error { return s.Return(h) },
		"ReturnView":   func(s *Shuffler, h Handle) error { return s.ReturnView(h) },
		"Free":         func(s *Shuffler, h Handle) error { return s.Free(h) },
		"Size":         func(s *Shuffler, h Handle) error { _, err := s.Size(h); return err },
		"Expiry":       func(s *Shuffler, h Handle) error { _, err := s.Expiry(h); return err },
		"SetExpiry":    func(s *Shuffler, h Handle) error { return s.SetExpiry(h, time.Now().Add(time.Hour)) },
		"Clone":        func(s *Shuffler, h Handle) error { _, err := Clone(s, h); return err },
		"Equal":        func(s *Shuffler, h Handle) error { _, err := Equal(s, h, []byte{1}); return err },
		"EqualEntries": func(s *Shuffler, h Handle) error { _, err := EqualEntries(s, h, h); return err },
		"EqualEntries, live first": func(s *Shuffler, h Handle) error {
			if s != nil && s.id != 0 && !s.closed.Load() {
				_, err := EqualEntries(s, live, h)
				return err
			}
			_, err := EqualEntries(s, h, h)
			return err
		},
		"MAC":       func(s *Shuffler, h Handle) error { _, err := MAC(s, h, sha256.New, []byte("m"), nil); return err },
		"NewSigner": func(s *Shuffler, h Handle) error { _, err := NewSigner(s, h); return err },
		"NewAEAD":   func(s *Shuffler, h Handle) error { _, err := NewAEAD(s, h); return err },
		"WriteTo":   func(s *Shuffler, h Handle) error { _, err := WriteTo(s, h, io.Discard); return err },
	}
	// Calls that take no Handle: refused on a Shuffler that is not open.
	noHandle := map[string]func(*Shuffler) error{
		"Alloc":          func(s *Shuffler) error { _, err := Alloc[byte](s, 8); return err },
		"Random":         func(s *Shuffler) error { _, err := Random(s, 8); return err },
		"CopyFrom":       func(s *Shuffler) error { _, err := CopyFrom(s, []byte{1}); return err },
		"ReadFrom":       func(s *Shuffler) error { _, err := ReadFrom(s, bytes.NewReader([]byte{1}), 1); return err },
		"ReadPrivateKey": func(s *Shuffler) error { _, err := ReadPrivateKey(s, bytes.NewReader(nil)); return err },
		"Shuffle":        func(s *Shuffler) error { return s.Shuffle() },
		"RotateKey":      func(s *Shuffler) error { return s.RotateKey(nil, nil) },
		"StartBackgroundShuffle": func(s *Shuffler) error {
			stop, err := s.StartBackgroundShuffle(ctx, time.Millisecond)
			if err == nil {
				stop()
			}
			return err
		},
		"PublishExpvar": func(s *Shuffler) error { return s.PublishExpvar(fmt.Sprintf("memshuffle-test-badstate-%p", s)) },
	}
	// Each call runs on a goroutine of its own, with a deadline: a call
	// that waits for ever (a forged Handle taken for a live entry's, which
	// a later call then waits on) fails in seconds, not at the test
	// binary's timeout.
	try := func(what string, want error, call func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			defer func() {
				if p := recover(); p != nil {
					done <- fmt.Errorf("panic: %v", p)
				}
			}()
			done <- call()
		}()
		select {
		case err := <-done:
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", what, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer in 10 s", what)
		}
	}
	for _, tg := range targets {
		for name, call := range withHandle {
			try(name+" on "+tg.name, tg.want, func() error { return call(tg.s, tg.h) })
		}
		if tg.want == ErrClosed {
			for name, call := range noHandle {
				try(name+" on "+tg.name, ErrClosed, func() error { return call(tg.s) })
			}
		}
		try("Valid, Stats, LongRents, SetShuffleOnBorrowReturn on "+tg.name, nil, func() error {
			if tg.s.Valid(tg.h) {
				return errors.New("Valid")
			}
			tg.s.Stats()
			tg.s.LongRents()
			tg.s.SetShuffleOnBorrowReturn(false)
			return nil
		})
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	for sh, h := range map[*Shuffler]Handle{s: live, other: foreign} {
		if ok, err := Equal(sh, h, bytes.Repeat([]byte{0x5a}, 32)); !ok || err != nil {
			t.Fatalf("an entry changed: %v, %v", ok, err)
		}
	}
}

// copyOf returns a copy of the Shuffler struct, made the way go vet does
// not see: a Shuffler not made by New, which shares s's shards.
func copyOf(s *Shuffler) *Shuffler {
	cp := new(Shuffler)
	reflect.ValueOf(cp).Elem().Set(reflect.ValueOf(s).Elem())
	return cp
}

// TestCopiedShufflerClose: a copy of a Shuffler's struct is not a
// Shuffler. Its Close and Purge must leave the original alone, and must
// not fault once the original is closed: the copy had a closed flag of its
// own, still false, and its Close wiped the ciphers the original's Close
// had unmapped (SIGSEGV, which no recover catches).
func TestCopiedShufflerClose(t *testing.T) {
	s := newTest(t)
	h, err := CopyFrom(s, []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	cp := copyOf(s)
	if err := cp.Purge(); err != nil {
		t.Fatal(err)
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := Equal(s, h, []byte("kept")); !ok || err != nil {
		t.Fatalf("the original after its copy's Purge and Close: %v, %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cp.Purge(); err != nil {
		t.Fatal(err)
	}
}

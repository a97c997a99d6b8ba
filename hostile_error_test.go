package memshuffle

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
)

// panickyError is an error of the caller's whose Is method panics, as
// errors.Is calls it on every error of a chain it walks.
type panickyError struct{}

func (panickyError) Error() string   { return "panicky" }
func (panickyError) Is(error) bool   { panic("panicky Is") }
func (panickyError) Unwrap() []error { return nil }

// TestCallerErrorWithPanickingIs: a reader, writer or Borrow function that
// closes or purges the Shuffler and then returns an error whose Is method
// panics gets ErrClosed back, not the panic. After Close or Purge those
// calls asked errors.Is whether the caller's error was a panic of its
// code, outside any recover.
func TestCallerErrorWithPanickingIs(t *testing.T) {
	ends := map[string]func(s *Shuffler){"Close": func(s *Shuffler) { s.Close() }, "Purge": func(s *Shuffler) { s.Purge() }}
	calls := map[string]func(s *Shuffler, end func(*Shuffler)) error{
		"ReadAll": func(s *Shuffler, end func(*Shuffler)) error {
			_, err := ReadAll(s, readerFunc(func([]byte) (int, error) { end(s); return 0, panickyError{} }), 10)
			return err
		},
		"ReadUntil": func(s *Shuffler, end func(*Shuffler)) error {
			_, err := ReadUntil(s, readerFunc(func([]byte) (int, error) { end(s); return 0, panickyError{} }), '\n', 10)
			return err
		},
		"ReadFrom": func(s *Shuffler, end func(*Shuffler)) error {
			_, err := ReadFrom(s, readerFunc(func([]byte) (int, error) { end(s); return 0, panickyError{} }), 10)
			return err
		},
		"WriteTo": func(s *Shuffler, end func(*Shuffler)) error {
			h, err := CopyFrom(s, []byte("secret"))
			if err != nil {
				return err
			}
			_, err = WriteTo(s, h, writerFunc(func([]byte) (int, error) { end(s); return 0, panickyError{} }))
			return err
		},
		"BorrowSlice": func(s *Shuffler, end func(*Shuffler)) error {
			h, err := CopyFrom(s, []byte("secret"))
			if err != nil {
				return err
			}
			return BorrowSlice(s, h, func([]byte) error { end(s); return panickyError{} })
		},
		"BorrowViewSlice": func(s *Shuffler, end func(*Shuffler)) error {
			h, err := CopyFrom(s, []byte("secret"))
			if err != nil {
				return err
			}
			return BorrowViewSlice(s, h, func([]byte) error { end(s); return panickyError{} })
		},
	}
	for cname, call := range calls {
		for ename, end := range ends {
			t.Run(cname+"/"+ename, func(t *testing.T) {
				s := newTest(t)
				var err error
				if p := panicOf(func() { err = call(s, end) }); p != nil {
					t.Fatalf("panicked: %v", p)
				}
				if !holds(err, ErrClosed) {
					t.Fatalf("%v, want ErrClosed", err)
				}
			})
		}
	}
}

// holds reports whether target is in err's tree, by identity: unlike
// errors.Is it calls no Is method of the caller's errors, and it follows
// at most holdsDepth errors down any branch, so that it ends on a tree
// with a cycle (TestCallerErrorWithCyclicUnwrap).
func holds(err, target error) bool { return holdsWithin(err, target, holdsDepth) }

const holdsDepth = 100

func holdsWithin(err, target error, n int) bool {
	for ; err != nil && n > 0; n-- {
		if err == target {
			return true
		}
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				if holdsWithin(x, target, n-1) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return false
		}
	}
	return false
}

// sliceError is an error of the caller's that == cannot compare, so that
// errors.Is calls its Is method, which panics, even with itself as target.
type sliceError []int

func (sliceError) Error() string { return "slice" }
func (sliceError) Is(error) bool { panic("slice Is") }

// TestCallerErrorWithPanickingIsOpen: with the Shuffler open, a reader's
// error whose Is panics is the reader's error still, not a panic of the
// read: ReadFrom asked whether it was io.EOF under its recover and
// answered ErrPanicked. A Signer's rand that fails with one (RSA-PSS reads
// rand for its salt) was blamed on the opts, ErrInvalidOption, its error
// lost.
func TestCallerErrorWithPanickingIsOpen(t *testing.T) {
	s := newTest(t)
	_, err := ReadFrom(s, readerFunc(func([]byte) (int, error) { return 0, panickyError{} }), 10)
	if err == nil || holds(err, ErrPanicked) || !holds(err, panickyError{}) {
		t.Errorf("ReadFrom: %v, want the reader's error and not ErrPanicked", err)
	}
	var rsak *rsa.PrivateKey
	for _, k := range testKeys() {
		if key, ok := k.priv.(*rsa.PrivateKey); ok {
			rsak = key
		}
	}
	sg := newTestSigner(t, s, rsak)
	digest := sha256.Sum256([]byte("message"))
	pss := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
	var sig []byte
	if p := panicOf(func() {
		sig, err = sg.Sign(readerFunc(func([]byte) (int, error) { return 0, sliceError{1} }), digest[:], pss)
	}); p != nil {
		t.Fatalf("Sign panicked: %v", p)
	}
	var se sliceError
	if sig != nil || !errors.As(err, &se) || holds(err, ErrInvalidOption) || holds(err, ErrPanicked) {
		t.Errorf("RSA-PSS with a rand failing with an error whose Is panics: %v, want that error, not ErrInvalidOption or ErrPanicked", err)
	}
}

// panicOf runs f and returns what it panicked with, or nil.
func panicOf(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

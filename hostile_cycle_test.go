package memshuffle

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"
)

// loopError is an error of the caller's whose Unwrap returns itself:
// errors.Is on it, for any target it does not match first, never returns.
type loopError struct{ _ byte } // not zero-size: each has an address of its own

func (*loopError) Error() string   { return "loop" }
func (e *loopError) Unwrap() error { return e }

// treeError is loopError for Unwrap() []error: errors.Is recurses into it
// until the goroutine's stack overflows, which ends the process.
type treeError struct{ _ byte }

func (*treeError) Error() string     { return "tree" }
func (e *treeError) Unwrap() []error { return []error{e} }

// cyclicErrors are the two, each with a fresh identity.
func cyclicErrors() map[string]func() error {
	return map[string]func() error{
		"Unwrap() error":   func() error { return &loopError{} },
		"Unwrap() []error": func() error { return &treeError{} },
	}
}

// returnsWithin runs call on a goroutine of its own and fails t if it has
// not returned within 10 s: a call that walks a cycle of errors spins for
// ever.
func returnsWithin(t *testing.T, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	return errWithin(t, done, "still running after 10 s")
}

// TestCallerErrorWithCyclicUnwrap: a reader, writer, Borrow function or
// Signer's rand that fails with an error whose Unwrap leads back to
// itself gets that error back, or ErrClosed where it closed or purged the
// Shuffler, and the call returns. The library asked errors.Is whether such
// an error was io.EOF (ReadFrom) or a panic of the caller's code (after
// Close or Purge): through Unwrap() error that looped for ever with the
// entry rented, through Unwrap() []error it overflowed the stack and ended
// the process.
func TestCallerErrorWithCyclicUnwrap(t *testing.T) {
	ends := map[string]func(s *Shuffler){
		"open":  func(*Shuffler) {},
		"Close": func(s *Shuffler) { s.Close() },
		"Purge": func(s *Shuffler) { s.Purge() },
	}
	calls := map[string]func(s *Shuffler, end func(*Shuffler), e error) error{
		"ReadAll": func(s *Shuffler, end func(*Shuffler), e error) error {
			_, err := ReadAll(s, readerFunc(func([]byte) (int, error) { end(s); return 0, e }), 10)
			return err
		},
		"ReadUntil": func(s *Shuffler, end func(*Shuffler), e error) error {
			_, err := ReadUntil(s, readerFunc(func([]byte) (int, error) { end(s); return 0, e }), '\n', 10)
			return err
		},
		"ReadFrom": func(s *Shuffler, end func(*Shuffler), e error) error {
			_, err := ReadFrom(s, readerFunc(func(p []byte) (int, error) { end(s); p[0] = 1; return 1, e }), 10)
			return err
		},
		"ReadPrivateKey": func(s *Shuffler, end func(*Shuffler), e error) error {
			_, err := ReadPrivateKey(s, readerFunc(func([]byte) (int, error) { end(s); return 0, e }))
			return err
		},
		"WriteTo": func(s *Shuffler, end func(*Shuffler), e error) error {
			h := mustCopyFrom(t, s, []byte("secret"))
			_, err := WriteTo(s, h, writerFunc(func([]byte) (int, error) { end(s); return 0, e }))
			return err
		},
		"BorrowSlice": func(s *Shuffler, end func(*Shuffler), e error) error {
			h := mustCopyFrom(t, s, []byte("secret"))
			return BorrowSlice(s, h, func([]byte) error { end(s); return e })
		},
		"BorrowViewSlice": func(s *Shuffler, end func(*Shuffler), e error) error {
			h := mustCopyFrom(t, s, []byte("secret"))
			return BorrowViewSlice(s, h, func([]byte) error { end(s); return e })
		},
	}
	for cname, call := range calls {
		for ename, end := range ends {
			for kname, mk := range cyclicErrors() {
				t.Run(cname+"/"+ename+"/"+kname, func(t *testing.T) {
					s := newTest(t)
					e := mk()
					err := returnsWithin(t, func() error { return call(s, end, e) })
					if err == nil || !holds(err, e) && !holds(err, ErrClosed) {
						t.Errorf("%v, want the caller's error or ErrClosed", err)
					}
					if ename == "open" && !holds(err, e) {
						t.Errorf("%v, want the caller's error", err)
					}
				})
			}
		}
	}
}

// TestSignRandWithCyclicUnwrap: an RSA-PSS signature (which reads rand
// for its salt) whose rand fails with a cyclic error returns that error.
func TestSignRandWithCyclicUnwrap(t *testing.T) {
	var rsak *rsa.PrivateKey
	for _, k := range testKeys() {
		if key, ok := k.priv.(*rsa.PrivateKey); ok {
			rsak = key
		}
	}
	s := newTest(t)
	sg := newTestSigner(t, s, rsak)
	digest := sha256.Sum256([]byte("message"))
	pss := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
	for kname, mk := range cyclicErrors() {
		t.Run(kname, func(t *testing.T) {
			e := mk()
			err := returnsWithin(t, func() error {
				_, err := sg.Sign(readerFunc(func([]byte) (int, error) { return 0, e }), digest[:], pss)
				return err
			})
			if !holds(err, e) {
				t.Errorf("%v, want rand's error", err)
			}
		})
	}
}

// cyclicCtx is a context of the caller's whose Err, once done, is a cyclic
// error.
type cyclicCtx struct {
	context.Context
	err error
}

func (c cyclicCtx) Err() error {
	if c.Context.Err() != nil {
		return c.err
	}
	return nil
}

// TestContextErrWithCyclicUnwrap: a Rent or Borrow that waits for a busy
// entry, under a context whose Err is a cyclic error, returns that error
// once the context is done; so does StartBackgroundShuffle given a
// context that is done already, and the Shuffler closes.
func TestContextErrWithCyclicUnwrap(t *testing.T) {
	waits := map[string]func(ctx context.Context, s *Shuffler, h Handle) error{
		"RentContext": func(ctx context.Context, s *Shuffler, h Handle) error {
			_, err := RentContext[byte](ctx, s, h)
			return err
		},
		"ViewSliceContext": func(ctx context.Context, s *Shuffler, h Handle) error {
			_, err := ViewSliceContext[byte](ctx, s, h)
			return err
		},
		"BorrowSliceContext": func(ctx context.Context, s *Shuffler, h Handle) error {
			return BorrowSliceContext(ctx, s, h, func([]byte) error { return nil })
		},
	}
	for wname, wait := range waits {
		for kname, mk := range cyclicErrors() {
			t.Run(wname+"/"+kname, func(t *testing.T) {
				s := newTest(t)
				h := mustCopyFrom(t, s, []byte("secret"))
				if _, err := RentSlice[byte](s, h); err != nil {
					t.Fatal(err)
				}
				parent, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				e := mk()
				err := returnsWithin(t, func() error { return wait(cyclicCtx{parent, e}, s, h) })
				if !holds(err, e) {
					t.Errorf("%v, want the context's error", err)
				}
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	for kname, mk := range cyclicErrors() {
		t.Run("StartBackgroundShuffle/"+kname, func(t *testing.T) {
			s := newTest(t)
			parent, cancel := context.WithCancel(context.Background())
			cancel()
			e := mk()
			err := returnsWithin(t, func() error {
				stop, err := s.StartBackgroundShuffle(cyclicCtx{parent, e}, time.Millisecond)
				if err == nil {
					stop()
				}
				return err
			})
			if err != nil && !holds(err, ErrClosed) {
				t.Errorf("StartBackgroundShuffle: %v", err)
			}
			if err := returnsWithin(t, s.Close); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// isError matches a target of its own choosing through its Is method.
type isError struct{ match error }

func (e isError) Error() string        { return "is" }
func (e isError) Is(target error) bool { return target == e.match }

// TestErrorsIsMatchesErrors holds errorsIs to errors.Is's answers on
// trees without cycles, and to giving up on those with one.
func TestErrorsIsMatchesErrors(t *testing.T) {
	other := errors.New("other")
	wrapped := fmt.Errorf("a: %w", fmt.Errorf("b: %w", io.EOF))
	joined := errors.Join(other, fmt.Errorf("c: %w", wrapped))
	slice := sliceError{1}
	long := error(io.EOF)
	for range errorWalkSteps - 1 {
		long = &chainError{long}
	}
	// 15 errors, which errors.Is reaches 2^13+1 times over.
	doubled := errors.New("leaf")
	for range 13 {
		doubled = errors.Join(doubled, doubled)
	}
	doubled = errors.Join(doubled, io.EOF)
	for _, c := range []struct {
		name        string
		err, target error
	}{
		{"nil both", nil, nil},
		{"nil err", nil, io.EOF},
		{"nil target", io.EOF, nil},
		{"same", io.EOF, io.EOF},
		{"different", other, io.EOF},
		{"wrapped", wrapped, io.EOF},
		{"joined", joined, io.EOF},
		{"joined, no match", errors.Join(other, other), io.EOF},
		{"Is method", fmt.Errorf("d: %w", isError{io.EOF}), io.EOF},
		{"Is method, no match", isError{other}, io.EOF},
		{"target not comparable", wrapped, sliceErrorNoIs{1}},
		{"err not comparable", fmt.Errorf("e: %w", sliceErrorNoIs{1}), io.EOF},
		{"as long as the walk", long, io.EOF},
		{"joined to itself over and over", doubled, io.EOF},
		{"target's own Is is not asked", io.EOF, slice},
	} {
		t.Run(c.name, func(t *testing.T) {
			is, ok := errorsIs(c.err, c.target)
			if want := errors.Is(c.err, c.target); is != want || !ok {
				t.Errorf("errorsIs = %v, %v; errors.Is = %v", is, ok, want)
			}
		})
	}
	longer := &chainError{long}
	wide := &wideError{}
	wide.errs = slices.Repeat([]error{wide}, 100000)
	for name, err := range map[string]error{"Unwrap() error": &loopError{}, "Unwrap() []error": &treeError{}, "a tree larger than the walk": longer, "a cycle 100,000 wide": wide} {
		if is, ok := errorsIs(err, io.EOF); is || ok {
			t.Errorf("%s: errorsIs = %v, %v, want false, false", name, is, ok)
		}
	}
	if is, ok := errorsIs(fmt.Errorf("f: %w", &loopError{}), &loopError{}); is || ok {
		t.Errorf("a cycle, another target: errorsIs = %v, %v, want false, false", is, ok)
	}
	e := &loopError{}
	if is, ok := errorsIs(fmt.Errorf("g: %w", e), e); !is || !ok {
		t.Errorf("a cycle holding the target: errorsIs = %v, %v, want true, true", is, ok)
	}
}

// sliceErrorNoIs is an error == cannot compare, without an Is method.
type sliceErrorNoIs []int

func (sliceErrorNoIs) Error() string { return "slice" }

// wideError is treeError with many copies of itself: a walk that gave up
// at the bottom of it and looked on at every level above took 2.4 s.
type wideError struct{ errs []error }

func (*wideError) Error() string     { return "wide" }
func (e *wideError) Unwrap() []error { return e.errs }

// chainError wraps an error without fmt.Errorf's message, which would
// hold the whole chain's.
type chainError struct{ next error }

func (*chainError) Error() string   { return "chain" }
func (e *chainError) Unwrap() error { return e.next }

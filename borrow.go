package memshuffle

import (
	"context"
	"fmt"
)

// errNilFunc is what the With functions return for a nil fn, before
// borrowing anything.
var errNilFunc = fmt.Errorf("%w: nil function", ErrNilArgument)

// With rents the entry as a *T, calls fn with it, and returns the entry,
// also when fn panics: the entry is encrypted again before the panic goes
// on. It returns fn's error, or Rent's or Return's, and ErrNilArgument for
// a nil fn. fn must not keep the pointer.
func With[T any](s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, err := Rent[T](s, h)
	return call(h, p, err, s.Return, fn)
}

// WithSlice is With for the whole entry as a []T.
func WithSlice[T any](s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, err := RentSlice[T](s, h)
	return call(h, b, err, s.Return, fn)
}

// WithView views the entry as a *T, calls fn with it, and ends the view,
// also when fn panics. Any number of WithView calls on one entry may run at
// once, from different goroutines; fn must not ask for another view of the
// same entry, which fails with ErrBusy while a writer waits (see View). fn
// must not write through the pointer or keep it.
func WithView[T any](s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, err := View[T](s, h)
	return call(h, p, err, s.ReturnView, fn)
}

// WithViewSlice is WithView for the whole entry as a []T.
func WithViewSlice[T any](s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, err := ViewSlice[T](s, h)
	return call(h, b, err, s.ReturnView, fn)
}

// call runs fn on what a borrow gave, unless the borrow failed, and ends
// the borrow with end even if fn panics.
func call[P any](h Handle, p P, err error, end func(Handle) error, fn func(P) error) (ferr error) {
	if err != nil {
		return err
	}

	defer func() {
		if rerr := end(h); ferr == nil {
			ferr = rerr
		}
	}()
	runSecret(func() { ferr = fn(p) })
	return ferr
}

// WithContext is With that, instead of failing with ErrBusy, waits for the
// entry as RentContext does, until ctx is done; then it returns ctx's error
// without calling fn.
func WithContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, err := RentContext[T](ctx, s, h)
	return call(h, p, err, s.Return, fn)
}

// WithSliceContext is WithSlice that waits like RentContext.
func WithSliceContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, err := RentSliceContext[T](ctx, s, h)
	return call(h, b, err, s.Return, fn)
}

// WithViewContext is WithView that waits like ViewContext: behind a rent,
// and behind a writer waiting in RentContext.
func WithViewContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func(*T) error) error {
	if fn == nil {
		return errNilFunc
	}
	p, err := ViewContext[T](ctx, s, h)
	return call(h, p, err, s.ReturnView, fn)
}

// WithViewSliceContext is WithViewSlice that waits like ViewContext. It is
// the form for a value read on every request and now and then replaced:
// readers wait out the brief write instead of failing with ErrBusy.
func WithViewSliceContext[T any](ctx context.Context, s *Shuffler, h Handle, fn func([]T) error) error {
	if fn == nil {
		return errNilFunc
	}
	b, err := ViewSliceContext[T](ctx, s, h)
	return call(h, b, err, s.ReturnView, fn)
}

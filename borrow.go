package memshuffle

// With rents the entry as a *T, calls fn with it, and returns the entry,
// also when fn panics: the entry is encrypted again before the panic goes
// on. It returns fn's error, or Rent's or Return's. fn must not keep the
// pointer.
func With[T any](s *Shuffler, h Handle, fn func(*T) error) (err error) {
	p, err := Rent[T](s, h)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := s.Return(h); err == nil {
			err = rerr
		}
	}()
	return fn(p)
}

// WithSlice is With for the whole entry as a []T.
func WithSlice[T any](s *Shuffler, h Handle, fn func([]T) error) (err error) {
	b, err := RentSlice[T](s, h)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := s.Return(h); err == nil {
			err = rerr
		}
	}()
	return fn(b)
}

// WithView views the entry as a *T, calls fn with it, and ends the view,
// also when fn panics. Any number of WithView calls on one entry may run at
// once. fn must not write through the pointer or keep it.
func WithView[T any](s *Shuffler, h Handle, fn func(*T) error) (err error) {
	p, err := View[T](s, h)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := s.ReturnView(h); err == nil {
			err = rerr
		}
	}()
	return fn(p)
}

// WithViewSlice is WithView for the whole entry as a []T.
func WithViewSlice[T any](s *Shuffler, h Handle, fn func([]T) error) (err error) {
	b, err := ViewSlice[T](s, h)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := s.ReturnView(h); err == nil {
			err = rerr
		}
	}()
	return fn(b)
}

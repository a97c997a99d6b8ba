package memshuffle

import (
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
// panics gets ErrClosed back, not the panic (ReadFrom, which asks whether
// the reader's error is io.EOF, beside ErrPanicked: the caller's code
// panicked there). After Close or Purge those calls asked errors.Is
// whether the caller's error was a panic of its code, outside any recover.
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
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("panicked: %v", p)
						}
					}()
					err = call(s, end)
				}()
				if !holds(err, ErrClosed) {
					t.Fatalf("%v, want ErrClosed", err)
				}
			})
		}
	}
}

// holds reports whether target is in err's tree, by identity: unlike
// errors.Is it calls no Is method of the caller's errors.
func holds(err, target error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		if err == target {
			return true
		}
		for _, x := range e.Unwrap() {
			if holds(x, target) {
				return true
			}
		}
		return false
	}
	return err == target || holds(errors.Unwrap(err), target)
}

package memshuffle

import (
	"errors"
	"testing"
)

// purgingPanicker purges its Shuffler and then panics, as a SafePanic in
// a reader or writer does to every Shuffler of the process.
type purgingPanicker struct{ s *Shuffler }

func (p purgingPanicker) Write([]byte) (int, error) { p.s.Purge(); panic("fatal in the writer") }
func (p purgingPanicker) Read([]byte) (int, error)  { p.s.Purge(); panic("fatal in the reader") }

// TestPurgingPanicKeepsPanic: a reader or writer that purges and then
// panics, as SafePanic does, gets an error matching both ErrClosed and
// ErrPanicked. ErrClosed alone used to win, and the panic value was lost:
// the program neither crashed nor learnt of the panic.
func TestPurgingPanicKeepsPanic(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(s *Shuffler) error
	}{
		{"WriteTo", func(s *Shuffler) error {
			h, err := CopyFrom(s, []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = WriteTo(s, h, purgingPanicker{s})
			return err
		}},
		{"ReadFrom", func(s *Shuffler) error {
			_, err := ReadFrom(s, purgingPanicker{s}, 16)
			return err
		}},
		{"ReadAll", func(s *Shuffler) error {
			_, err := ReadAll(s, purgingPanicker{s}, 16)
			return err
		}},
		{"BorrowSlice", func(s *Shuffler) error {
			h, err := Alloc[byte](s, 8)
			if err != nil {
				t.Fatal(err)
			}
			return BorrowSlice(s, h, func([]byte) error {
				_, err := ReadFrom(s, purgingPanicker{s}, 4)
				return err
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t)
			err := tc.run(s)
			if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrPanicked) {
				t.Fatalf("%v: want an error matching ErrClosed and ErrPanicked", err)
			}
		})
	}
}

package memshuffle

import (
	"context"
	"errors"
	"testing"
)

// doneNoErr is a context that breaks its contract: Done is closed, Err is
// nil.
type doneNoErr struct{ context.Context }

func (doneNoErr) Done() <-chan struct{} { return closedChan }
func (doneNoErr) Err() error            { return nil }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// panicsIn is a context whose Done or Err panics.
type panicsIn struct {
	context.Context
	done bool // Done panics; else Done is closed and Err panics
}

func (c panicsIn) Done() <-chan struct{} {
	if c.done {
		panic("Done")
	}
	return closedChan
}

func (c panicsIn) Err() error { panic("Err") }

// TestHostileContext: a context that reports no error when done, or
// panics, makes a waiting borrow fail with a typed error, runs no callback,
// and leaves the entry, its renter and its waiters as they were.
func TestHostileContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"done without an error", doneNoErr{context.Background()}, context.Canceled},
		{"Done panics", panicsIn{context.Background(), true}, ErrPanicked},
		{"Err panics", panicsIn{context.Background(), false}, ErrPanicked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			h, err := CopyFrom(s, []byte("0123456789abcdef"))
			if err != nil {
				t.Fatal(err)
			}
			held, err := Rent[[16]byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			p, err := RentContext[[16]byte](tc.ctx, s, h)
			if p != nil || !errors.Is(err, tc.want) {
				t.Fatalf("RentContext = %p, %v; want nil, %v", p, err, tc.want)
			}
			called := false
			err = BorrowContext(tc.ctx, s, h, func(*[16]byte) error { called = true; return nil })
			if called || !errors.Is(err, tc.want) {
				t.Fatalf("BorrowContext: fn called %v, error %v; want not called, %v", called, err, tc.want)
			}
			held[0] = 'X'
			if err := s.Return(h); err != nil {
				t.Fatal("the first renter's Return:", err)
			}
			// No writer is left queued: a view of the idle entry
			// succeeds, and reads the first renter's write.
			mustHold(t, s, h, []byte("X123456789abcdef"))
		})
	}
}

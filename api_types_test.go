package memshuffle

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type flagged struct {
	Key     [16]byte
	Enabled bool
	_       [7]byte
}

type nestedFlag struct {
	N     uint64
	Flags [8]struct{ On bool }
}

// TestBoolRefused: every byte pattern of an entry must be a valid value of
// the type it is rented as, since entries are filled from bytes (CopyFrom,
// ReadFrom, Random, a byte entry rented as a struct) and, under AES256CTR,
// a byte changed at rest changes the value undetected. A bool is the one
// plain-data kind for which that fails: a bool holding 2 was both true and
// not true, and the compiler, which assumes 0 or 1, dropped the bounds
// check of an array indexed by it, so a program read past the array (by
// hand: Rent[bool] of CopyFrom([]byte{2}) indexed a [2]uint64 and read the
// field after it). Types holding a bool are refused like those holding a
// pointer; uint8 holds a flag instead.
func TestBoolRefused(t *testing.T) {
	s := newTest(t)
	raw, err := CopyFrom(s, []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Create[bool]", func() error { _, err := Create[bool](s); return err }},
		{"Alloc[bool]", func() error { _, err := Alloc[bool](s, 8); return err }},
		{"Create[flagged]", func() error { _, err := Create[flagged](s); return err }},
		{"Create[nestedFlag]", func() error { _, err := Create[nestedFlag](s); return err }},
		{"Rent[bool]", func() error { _, err := Rent[bool](s, raw); return err }},
		{"RentSlice[bool]", func() error { _, err := RentSlice[bool](s, raw); return err }},
		{"View[flagged]", func() error { _, err := View[flagged](s, raw); return err }},
		{"ViewSlice[[4]bool]", func() error { _, err := ViewSlice[[4]bool](s, raw); return err }},
		{"Borrow[flagged]", func() error { return Borrow(s, raw, func(*flagged) error { return nil }) }},
		{"BorrowViewSlice[bool]", func() error { return BorrowViewSlice(s, raw, func([]bool) error { return nil }) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, ErrUnsupportedType) {
			t.Errorf("%s: %v, want ErrUnsupportedType", c.name, err)
		}
	}
	if st := s.Stats(); st.Rented+st.Viewed != 0 || st.Entries != 1 {
		t.Fatalf("refused calls left %+v", st)
	}
	// The same shapes with a uint8 for the flag are fine.
	if err := Borrow(s, raw, func(p *struct {
		Key     [16]byte
		Enabled uint8
		_       [7]byte
	}) error {
		if p.Enabled != 0 || p.Key[0] != 2 {
			t.Errorf("read %+v", *p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// notComparable is plain data made not comparable the usual way (as
// protobuf's pragma.DoNotCompare does): a zero-length array of funcs,
// which holds no func, so no pointer; likewise a zero-length array of
// bools holds no bool.
type notComparable struct {
	_ [0]func()
	_ [0]bool
	K uint64
}

// TestZeroLengthArraysAccepted: a struct with zero-length arrays of a
// pointer kind or of bool is accepted, as plain data: it holds neither.
// It was refused with ErrUnsupportedType, "holds a Go pointer at ._[]
// (func)", since the walk looked at the element type of every array.
func TestZeroLengthArraysAccepted(t *testing.T) {
	s := newTest(t)
	h, err := Create[notComparable](s)
	if err != nil {
		t.Fatalf("Create[notComparable]: %v", err)
	}
	if err := Borrow(s, h, func(p *notComparable) error { p.K = 7; return nil }); err != nil {
		t.Fatalf("Borrow: %v", err)
	}
	if p, err := View[notComparable](s, h); err != nil || p.K != 7 {
		t.Fatalf("View: %v", err)
	}
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	// One element is one too many.
	if _, err := Create[struct {
		_ [1]func()
		K uint64
	}](s); !errors.Is(err, ErrUnsupportedType) {
		t.Fatalf("Create of a struct with a [1]func(): %v, want ErrUnsupportedType", err)
	}
}

// A busy entry's error says what it is busy with, whichever borrow holds
// it, and a context already done does not keep a free entry from being
// taken (the documented rule of RentContext and BorrowContext).
func TestBusyAndDoneContext(t *testing.T) {
	s := newTest(t)
	h, err := Alloc[byte](s, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := View[byte](s, h); err != nil {
		t.Fatal(err)
	}
	for name, try := range map[string]func() error{
		"Rent": func() error { _, err := Rent[byte](s, h); return err },
		"Free": func() error { return s.Free(h) },
	} {
		if err := try(); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "viewed") {
			t.Errorf("%s of a viewed entry: %v, want ErrBusy saying it is viewed", name, err)
		}
	}
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RentContext[byte](ctx, s, h); err != nil {
		t.Fatalf("RentContext of a free entry with ctx done: %v, want the rent", err)
	}
	if _, err := RentContext[byte](ctx, s, h); !errors.Is(err, context.Canceled) {
		t.Fatalf("RentContext of a rented entry with ctx done: %v, want context.Canceled", err)
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	called := false
	if err := BorrowContext(ctx, s, h, func(*byte) error { called = true; return nil }); err != nil || !called {
		t.Fatalf("BorrowContext of a free entry with ctx done: %v, fn called %v", err, called)
	}
}

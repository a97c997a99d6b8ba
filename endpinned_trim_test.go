package memshuffle

import (
	"errors"
	"testing"
)

// TestBorrowFnFreesOwnEntryAndChunk: fn returns and frees its own entry
// (endPinned's comment foresees exactly this: "fn returned the entry
// itself and someone freed it since"). When that Free lets the slot
// table drop the entry's chunk, endPinned indexes the dropped chunk and
// Borrow panics with an index out of range instead of returning
// ErrInvalidHandle.
func TestBorrowFnFreesOwnEntryAndChunk(t *testing.T) {
	s := newTest(t, WithShards(1))
	var first []Handle
	for range 4096 { // fill chunk 0 of the slot table
		h, err := Alloc[byte](s, 8)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, h)
	}
	h, err := Alloc[byte](s, 8) // slot 4096: chunk 1
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range first {
		if err := s.Free(f); err != nil {
			t.Fatal(err)
		}
	}
	var got error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("Borrow panicked: %v", p)
			}
		}()
		got = BorrowSlice(s, h, func([]byte) error {
			if err := s.Return(h); err != nil {
				t.Error(err)
			}
			return s.Free(h) // chunk 1 is now empty, as is chunk 0: dropped
		})
	}()
	if got != nil && !errors.Is(got, ErrInvalidHandle) {
		t.Errorf("Borrow: %v, want ErrInvalidHandle", got)
	}
}

// TestWriteToWriterFreesOwnEntryAndChunk: the same through WriteTo, whose
// io.Writer calls back into the library with the handle.
func TestWriteToWriterFreesOwnEntryAndChunk(t *testing.T) {
	s := newTest(t, WithShards(1))
	var first []Handle
	for range 4096 {
		h, _ := Alloc[byte](s, 8)
		first = append(first, h)
	}
	h, _ := Alloc[byte](s, 8)
	for _, f := range first {
		s.Free(f)
	}
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("WriteTo panicked: %v", p)
		}
	}()
	_, err := WriteTo(s, h, writerFunc(func(p []byte) (int, error) {
		s.ReturnView(h)
		s.Free(h)
		return len(p), nil
	}))
	if err != nil && !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("WriteTo: %v, want ErrInvalidHandle or nil", err)
	}
}

package memshuffle

import (
	"testing"
	"unsafe"
)

// testSliceLen checks that RentSlice and ViewSlice of an entry of n Ts
// have n elements, and that Alloc[T] of n makes an entry of n*size bytes:
// the lengths come from T's size as a constant of its shape, not from the
// type information, and a shape of another size must not share it.
func testSliceLen[T any](t *testing.T, n int) {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := Alloc[T](s, n)
	if err != nil {
		t.Fatal(err)
	}
	var z T
	if size, err := s.Size(h); err != nil || size != n*int(unsafe.Sizeof(z)) {
		t.Fatalf("%T: Alloc of %d gives %d bytes (%v)", z, n, size, err)
	}
	r, err := RentSlice[T](s, h)
	if err != nil || len(r) != n || cap(r) != n {
		t.Fatalf("%T: RentSlice gives len %d cap %d (%v), want %d", z, len(r), cap(r), err, n)
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	v, err := ViewSlice[T](s, h)
	if err != nil || len(v) != n {
		t.Fatalf("%T: ViewSlice gives len %d (%v), want %d", z, len(v), err, n)
	}
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	b, err := RentSlice[byte](s, h)
	if err != nil || len(b) != n*int(unsafe.Sizeof(z)) {
		t.Fatalf("%T: RentSlice[byte] gives len %d (%v)", z, len(b), err)
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
}

type myByte uint8

// odd7 is 7 bytes of data padded to 8, aligned to 4.
type odd7 struct {
	_ uint32
	_ uint16
	_ uint8
}

func TestSliceLenPerShape(t *testing.T) {
	testSliceLen[byte](t, 37)
	testSliceLen[myByte](t, 37)
	testSliceLen[uint16](t, 5)
	testSliceLen[uint64](t, 4)
	testSliceLen[[3]byte](t, 11)
	testSliceLen[[5]uint16](t, 3)
	testSliceLen[odd7](t, 9)
	testSliceLen[float32](t, 6)
}

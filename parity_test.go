package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// pair is a 16-byte struct, the kind of typed view EntryAlign promises on
// byte entries.
type pair struct{ A, B uint64 }

// tryRent rents h as a T, checks the pointer's alignment, and reports
// whether the rent worked; any error but ErrTypeMismatch fails the test.
func tryRent[T any](t *testing.T, s *Shuffler, h Handle, when string) bool {
	t.Helper()
	p, err := Rent[T](s, h)
	if errors.Is(err, ErrTypeMismatch) {
		return false
	}
	if err != nil {
		var z T
		t.Fatalf("%s: Rent[%T] of %v: %v", when, z, h, err)
	}
	if a := uintptr(unsafe.Pointer(p)); a%unsafe.Alignof(*p) != 0 {
		t.Fatalf("%s: %T at %#x", when, *p, a)
	}
	s.Return(h)
	return true
}

// Entries from every constructor are aligned to the largest power of two
// dividing their size, up to EntryAlign: exactly the plain types whose
// alignment divides the size (and which fit) can be rented from them, so a
// []uint64 whenever the size is a multiple of 8 and a 16-byte struct
// whenever it is a multiple of 16; before and after moves, in every cipher
// mode (whose tags follow the data).
func TestByteEntriesAligned(t *testing.T) {
	t.Parallel()
	constructors := []struct {
		name string
		make func(s *Shuffler, src []byte) (Handle, error)
	}{
		{"Alloc[byte]", func(s *Shuffler, src []byte) (Handle, error) {
			h, err := Alloc[byte](s, len(src))
			if err == nil {
				err = BorrowSlice(s, h, func(b []byte) error { copy(b, src); return nil })
			}
			return h, err
		}},
		{"ReadFrom", func(s *Shuffler, src []byte) (Handle, error) { return ReadFrom(s, bytes.NewReader(src), len(src)) }},
		{"CopyFrom", func(s *Shuffler, src []byte) (Handle, error) { return CopyFrom(s, bytes.Clone(src)) }},
		{"ReadAll", func(s *Shuffler, src []byte) (Handle, error) { return ReadAll(s, bytes.NewReader(src), 1<<20) }},
		{"ReadUntil", func(s *Shuffler, src []byte) (Handle, error) {
			return ReadUntil(s, bytes.NewReader(append(bytes.Clone(src), 0xff)), 0xff, 1<<20)
		}},
		{"Random", func(s *Shuffler, src []byte) (Handle, error) {
			h, err := Random(s, len(src))
			if err == nil {
				err = BorrowSlice(s, h, func(b []byte) error { copy(b, src); return nil })
			}
			return h, err
		}},
		{"Clone", func(s *Shuffler, src []byte) (Handle, error) {
			h, err := CopyFrom(s, bytes.Clone(src))
			if err != nil {
				return h, err
			}
			return Clone(s, h)
		}},
	}
	for _, cipher := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		for _, c := range constructors {
			t.Run(cipher.String()+"/"+c.name, func(t *testing.T) {
				s := newTest(t, WithShards(1), WithCipher(cipher))
				var hs []Handle
				// Odd sizes first, so a bump allocator without the rule would
				// leave the next entries misaligned.
				for _, n := range []int{1, 3, 17, 2, 4, 8, 12, 16, 24, 37, 48, 1000} {
					src := make([]byte, n)
					for i := range src {
						src[i] = byte(i*7 + 1) // no 0xff: ReadUntil's delimiter
					}
					h, err := c.make(s, src)
					if err != nil {
						t.Fatalf("size %d: %v", n, err)
					}
					hs = append(hs, h)
				}
				check := func(when string) {
					t.Helper()
					for _, h := range hs {
						n, _ := s.Size(h)
						align := min(EntryAlign, n&-n)
						if a := addrOf(s, h); a%uintptr(align) != 0 {
							t.Fatalf("%s: entry of %d bytes at %#x, want a multiple of %d", when, n, a, align)
						}
						// Each type can be rented exactly when it fits and its
						// alignment divides the entry's.
						rents := []struct {
							ok          bool
							size, align int
						}{
							// The alignments are the platform's: a
							// uint64 is 4-byte aligned on 32-bit ones.
							{tryRent[uint16](t, s, h, when), 2, int(unsafe.Alignof(uint16(0)))},
							{tryRent[uint32](t, s, h, when), 4, int(unsafe.Alignof(uint32(0)))},
							{tryRent[uint64](t, s, h, when), 8, int(unsafe.Alignof(uint64(0)))},
							{tryRent[complex128](t, s, h, when), 16, int(unsafe.Alignof(complex128(0)))},
							{tryRent[pair](t, s, h, when), 16, int(unsafe.Alignof(pair{}))},
						}
						for i, r := range rents {
							if want := r.size <= n && align%r.align == 0; r.ok != want {
								t.Fatalf("%s: rent %d of %d bytes aligned to %d: worked %v, want %v", when, i, n, align, r.ok, want)
							}
						}
						if n >= 16 && n%16 == 0 {
							p, err := Rent[pair](s, h)
							if err != nil {
								t.Fatalf("%s: Rent[pair] of %d bytes: %v", when, n, err)
							}
							// The view reads the bytes written as bytes, in
							// the machine's byte order (1 and 8 lead on s390x).
							if first := (*[8]byte)(unsafe.Pointer(&p.A)); first[0] != 1 || first[1] != 8 {
								t.Fatalf("%s: pair view reads %#x", when, p.A)
							}
							s.Return(h)
							if _, err := RentSlice[pair](s, h); err != nil {
								t.Fatalf("%s: RentSlice[pair] of %d bytes: %v", when, n, err)
							}
							s.Return(h)
						}
						if n%8 == 0 {
							u, err := RentSlice[uint64](s, h)
							if err != nil {
								t.Fatalf("%s: RentSlice[uint64] of %d bytes: %v", when, n, err)
							}
							if len(u) != n/8 {
								t.Fatalf("%s: %d uint64s from %d bytes", when, len(u), n)
							}
							s.Return(h)
						}
					}
					mustCheck(t, s)
				}
				check("made")
				if err := s.Shuffle(); err != nil {
					t.Fatal(err)
				}
				check("shuffled")
				s.SetShuffleOnBorrowReturn(true)
				check("moved on return")
				check("moved twice")
			})
		}
	}
}

// Entries whose size is a multiple of their alignment pay no padding for
// the rule: 8-byte entries sit 8 bytes apart, as they did when only their
// type's alignment counted.
func TestEntryAlignPadding(t *testing.T) {
	t.Parallel()
	s := newTest(t, WithShards(1))
	var prev uintptr
	for i := range 100 {
		h, err := Alloc[byte](s, 8)
		if err != nil {
			t.Fatal(err)
		}
		a := addrOf(s, h)
		if i > 0 && a-prev != 8 {
			t.Fatalf("8-byte entries %d bytes apart", a-prev)
		}
		prev = a
	}
}

func TestRandom(t *testing.T) {
	t.Parallel()
	s := newTest(t)
	for _, n := range []int{1, 16, 32, 1019, 64 << 10} {
		a, err := Random(s, n)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Random(s, n)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 16 {
			if eq, _ := EqualEntries(s, a, b); eq {
				t.Fatalf("two Random(%d) are equal", n)
			}
			if eq, _ := Equal(s, a, make([]byte, n)); eq {
				t.Fatalf("Random(%d) is all zeros", n)
			}
		}
		if sz, _ := s.Size(a); sz != n {
			t.Fatalf("Size = %d, want %d", sz, n)
		}
	}
	for _, n := range []int{0, -1, overMax} {
		if _, err := Random(s, n); !errors.Is(err, ErrInvalidSize) {
			t.Fatalf("Random(%d): %v", n, err)
		}
	}
	var zero Shuffler
	if _, err := Random(&zero, 8); !errors.Is(err, ErrClosed) {
		t.Fatalf("zero Shuffler: %v", err)
	}
}

// failWriter takes ok bytes, then fails.
type failWriter struct {
	ok  int
	err error
	got []byte
}

func (w *failWriter) Write(b []byte) (int, error) {
	n := min(len(b), w.ok)
	w.got = append(w.got, b[:n]...)
	return n, w.err
}

type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("writer broke") }

func TestWriteTo(t *testing.T) {
	t.Parallel()
	secret := []byte("correct horse battery staple")
	errBroken := errors.New("broken pipe")
	tests := []struct {
		name string
		w    *failWriter
		n    int64
		err  error
	}{
		{"all", &failWriter{ok: 1 << 20}, int64(len(secret)), nil},
		{"fails part way", &failWriter{ok: 5, err: errBroken}, 5, errBroken},
		{"fails at once", &failWriter{ok: 0, err: errBroken}, 0, errBroken},
		{"short without error", &failWriter{ok: 7}, 7, io.ErrShortWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t)
			h, err := CopyFrom(s, bytes.Clone(secret))
			if err != nil {
				t.Fatal(err)
			}
			n, err := WriteTo(s, h, tt.w)
			if n != tt.n || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("WriteTo = %d, %v; want %d, %v", n, err, tt.n, tt.err)
			}
			if !bytes.Equal(tt.w.got, secret[:n]) {
				t.Fatalf("wrote %q", tt.w.got)
			}
			mustBeSealed(t, s, h, secret)
		})
	}

	s := newTest(t)
	h, _ := CopyFrom(s, bytes.Clone(secret))
	t.Run("panics", func(t *testing.T) {
		var nilBuf *bytes.Buffer
		for _, w := range []io.Writer{panicWriter{}, nilBuf} {
			n, err := WriteTo(s, h, w)
			if n != 0 || !errors.Is(err, ErrPanicked) {
				t.Fatalf("WriteTo(%T that panics) = %d, %v; want 0, ErrPanicked", w, n, err)
			}
			mustBeSealed(t, s, h, secret)
		}
	})
	t.Run("bad count", func(t *testing.T) {
		if _, err := WriteTo(s, h, writeFunc(func(b []byte) (int, error) { return len(b) + 1, nil })); err == nil {
			t.Fatal("no error for a count past the slice")
		}
		mustBeSealed(t, s, h, secret)
	})
	t.Run("errors", func(t *testing.T) {
		var buf bytes.Buffer
		if _, err := WriteTo(s, h, nil); !errors.Is(err, ErrNilArgument) {
			t.Fatalf("nil writer: %v", err)
		}
		if _, err := WriteTo(s, Handle{}, &buf); !errors.Is(err, ErrInvalidHandle) {
			t.Fatalf("zero handle: %v", err)
		}
		if _, err := Rent[byte](s, h); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteTo(s, h, &buf); !errors.Is(err, ErrBusy) {
			t.Fatalf("rented: %v", err)
		}
		s.Return(h)
		// Viewed elsewhere is fine: WriteTo is a reader.
		if _, err := View[byte](s, h); err != nil {
			t.Fatal(err)
		}
		if n, err := WriteTo(s, h, &buf); err != nil || n != int64(len(secret)) {
			t.Fatalf("viewed: %d, %v", n, err)
		}
		s.ReturnView(h)
		mustBeSealed(t, s, h, secret)
	})
}

// mustBeSealed fails unless h is encrypted at rest (not rented, not viewed,
// not plaintext in its arena) and still holds want.
func mustBeSealed(t testing.TB, s *Shuffler, h Handle, want []byte) {
	t.Helper()
	if st := s.Stats(); st.Rented+st.Viewed != 0 {
		t.Fatalf("%d entries still borrowed", st.Rented+st.Viewed)
	}
	if bytes.Contains(memOf(s, h), want) {
		t.Fatal("plaintext at rest")
	}
	mustHold(t, s, h, want)
	mustCheck(t, s)
}

func TestEqual(t *testing.T) {
	t.Parallel()
	s := newTest(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	h, _ := CopyFrom(s, bytes.Clone(secret))
	flip := func(i int) []byte { b := bytes.Clone(secret); b[i] ^= 1; return b }
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"same", secret, true},
		{"first byte differs", flip(0), false},
		{"last byte differs", flip(len(secret) - 1), false},
		{"prefix", secret[:len(secret)-1], false},
		{"longer", append(bytes.Clone(secret), 0), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		got, err := Equal(s, h, tt.b)
		if err != nil || got != tt.want {
			t.Fatalf("%s: Equal = %v, %v; want %v", tt.name, got, err, tt.want)
		}
		mustBeSealed(t, s, h, secret)
	}
	if _, err := Equal(s, Handle{}, secret); !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("zero handle: %v", err)
	}
	Rent[byte](s, h)
	if eq, err := Equal(s, h, secret); eq || !errors.Is(err, ErrBusy) {
		t.Fatalf("rented: %v, %v", eq, err)
	}
	s.Return(h)
}

func TestEqualEntries(t *testing.T) {
	t.Parallel()
	s := newTest(t)
	mk := func(v string) Handle {
		h, err := CopyFrom(s, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a, a2, b, short := mk("secret-one"), mk("secret-one"), mk("secret-two"), mk("secret")
	tests := []struct {
		name string
		x, y Handle
		want bool
		err  error
	}{
		{"equal", a, a2, true, nil},
		{"differ", a, b, false, nil},
		{"sizes differ", a, short, false, nil},
		{"sizes differ, other way", short, a, false, nil},
		{"same handle", a, a, true, nil},
		{"zero first", Handle{}, a, false, ErrInvalidHandle},
		{"zero second", a, Handle{}, false, ErrInvalidHandle},
	}
	for _, tt := range tests {
		got, err := EqualEntries(s, tt.x, tt.y)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Fatalf("%s: EqualEntries = %v, %v; want %v, %v", tt.name, got, err, tt.want, tt.err)
		}
		if st := s.Stats(); st.Rented+st.Viewed != 0 {
			t.Fatalf("%s: %d entries left borrowed", tt.name, st.Rented+st.Viewed)
		}
	}
	Rent[byte](s, b)
	if _, err := EqualEntries(s, a, b); !errors.Is(err, ErrBusy) {
		t.Fatalf("rented: %v", err)
	}
	s.Return(b)

	// The same handle twice, while another reader views it and a writer
	// waits for it: one view is taken, which fails with ErrBusy behind the
	// writer as Equal's would, and no second one, so nothing waits.
	if _, err := View[byte](s, a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	writer := make(chan error, 1)
	go func() {
		_, err := RentContext[byte](ctx, s, a)
		if err == nil {
			err = s.Return(a)
		}
		writer <- err
	}()
	waitForWriter(t, s, a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if eq, err := EqualEntries(s, a, a); eq || !errors.Is(err, ErrBusy) {
			t.Errorf("same handle with a writer waiting: %v, %v; want ErrBusy", eq, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("EqualEntries(a, a) did not return")
	}
	s.ReturnView(a)
	if err := <-writer; err != nil {
		t.Fatal(err)
	}
}

// waitForWriter waits until a writer is queued for h.
func waitForWriter(t *testing.T, s *Shuffler, h Handle) {
	t.Helper()
	for range 5000 {
		sh := &s.shards[h.shard()]
		sh.mu.Lock()
		n := sh.Waiters.Writers(h.id)
		sh.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("writer never queued")
}

func TestClone(t *testing.T) {
	t.Parallel()
	for _, cipher := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(cipher.String(), func(t *testing.T) {
			s := newTest(t, WithCipher(cipher))
			secret := []byte(strings.Repeat("clone me ", 20))
			h, _ := CopyFrom(s, bytes.Clone(secret))
			c, err := Clone(s, h)
			if err != nil {
				t.Fatal(err)
			}
			if c == h {
				t.Fatal("Clone returned the same handle")
			}
			mustBeSealed(t, s, c, secret)
			mustBeSealed(t, s, h, secret)
			// Fresh counters: equal plaintexts, unrelated ciphertexts.
			if bytes.Equal(memOf(s, h), memOf(s, c)) {
				t.Fatal("clone has the original's ciphertext")
			}
			// Independent: a change to one, or freeing it, leaves the other.
			BorrowSlice(s, c, func(b []byte) error { b[0] = 'C'; return nil })
			mustHold(t, s, h, secret)
			if err := s.Free(h); err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(secret)
			want[0] = 'C'
			mustHold(t, s, c, want)

			// Failures leave no entry behind.
			before := s.Stats().Entries
			Rent[byte](s, c)
			if _, err := Clone(s, c); !errors.Is(err, ErrBusy) {
				t.Fatalf("rented: %v", err)
			}
			s.Return(c)
			if _, err := Clone(s, h); !errors.Is(err, ErrInvalidHandle) {
				t.Fatalf("freed: %v", err)
			}
			if after := s.Stats().Entries; after != before {
				t.Fatalf("%d entries after failed Clones, want %d", after, before)
			}
			mustCheck(t, s)
		})
	}
}

type writeFunc func([]byte) (int, error)

func (f writeFunc) Write(b []byte) (int, error) { return f(b) }

// TestEqualEntriesSameHandleViews: EqualEntries(a, a) views the entry
// once, so a tampered entry (AES256GCM) fails with ErrTampered and a
// rented one with ErrBusy, as they do against another entry.
func TestEqualEntriesSameHandleViews(t *testing.T) {
	s := newTest(t, WithCipher(AES256GCM))
	a, err := CopyFrom(s, []byte("a 32-byte secret to compare. ...."))
	if err != nil {
		t.Fatal(err)
	}
	ext := extentOf(s, a)
	ext[0] ^= 1
	if eq, err := EqualEntries(s, a, a); !errors.Is(err, ErrTampered) {
		t.Errorf("EqualEntries of a tampered entry with itself = %v, %v; want ErrTampered", eq, err)
	}
	ext[0] ^= 1

	if _, err := RentSlice[byte](s, a); err != nil {
		t.Fatal(err)
	}
	defer s.Return(a)
	if _, err := Equal(s, a, []byte("a 32-byte secret to compare. ....")); !errors.Is(err, ErrBusy) {
		t.Fatalf("Equal of a rented entry: %v", err)
	}
	if eq, err := EqualEntries(s, a, a); !errors.Is(err, ErrBusy) {
		t.Errorf("EqualEntries of a rented entry with itself = %v, %v; want ErrBusy", eq, err)
	}
}

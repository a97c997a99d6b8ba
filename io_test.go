package memshuffle

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

func TestReadFrom(t *testing.T) {
	s := newTest(t)
	h, err := ReadFrom(s, strings.NewReader("0123456789abcdef-and-more"), 16)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h); string(got) != "0123456789abcdef" {
		t.Fatalf("got %q", got)
	}
	before := s.Stats().Entries
	_, err = ReadFrom(s, strings.NewReader("short"), 16)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short read: %v", err)
	}
	if s.Stats().Entries != before {
		t.Fatal("failed ReadFrom left an entry")
	}
	for _, tc := range []struct {
		r    io.Reader
		n    int
		want error
	}{
		{nil, 4, ErrNilArgument},
		{strings.NewReader("x"), 0, ErrInvalidSize},
		{strings.NewReader("x"), -3, ErrInvalidSize},
	} {
		if _, err := ReadFrom(s, tc.r, tc.n); !errors.Is(err, tc.want) {
			t.Fatalf("ReadFrom(%v, %d): %v", tc.r, tc.n, err)
		}
	}
	// A file is read straight into the entry.
	f, err := os.CreateTemp(t.TempDir(), "secret")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("file secret")
	f.Seek(0, 0)
	h2, err := ReadFrom(s, f, 11)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h2); string(got) != "file secret" {
		t.Fatalf("got %q", got)
	}
	mustCheck(t, s)
	closed, _ := New()
	closed.Close()
	if _, err := ReadFrom(closed, strings.NewReader("abcd"), 4); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

func TestCopyFrom(t *testing.T) {
	s := newTest(t)
	src := []byte("a secret in a heap buffer")
	want := bytes.Clone(src)
	h, err := CopyFrom(s, src)
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(src) {
		t.Fatal("CopyFrom did not wipe its source")
	}
	if got := readAll(t, s, h); !bytes.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
	empty := []byte{}
	if _, err := CopyFrom(s, empty); !errors.Is(err, ErrInvalidSize) {
		t.Fatal(err)
	}
	b := []byte{1, 2, 3}
	Wipe(b)
	if !allZero(b) {
		t.Fatal("Wipe")
	}
}

func TestPurge(t *testing.T) {
	s, err := New(WithShards(2), WithRentTracking(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	var hs []Handle
	for i := range 20 {
		h, _ := Alloc[byte](s, 10+i)
		hs = append(hs, h)
	}
	rented, _ := RentSlice[byte](s, hs[0])
	for i := range rented {
		rented[i] = 0xAA
	}
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	if !allZero(rented) {
		t.Fatal("rented entry not wiped by Purge")
	}
	if !allZero(s.own.Data) {
		t.Fatal("keys not wiped by Purge")
	}
	mustCheck(t, s)
	if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 || st.LiveBytes != 0 || len(s.LongRents()) != 0 {
		t.Fatalf("after Purge: %+v, long rents %v", st, s.LongRents())
	}
	goroutineGone(t, "watchRents")
	if _, err := Rent[byte](s, hs[1]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rent after Purge: %v", err)
	}
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.MappedBytes != 0 || st.Arenas != 0 {
		t.Fatalf("Close after Purge left %+v", st)
	}
	mustCheck(t, s)
}

// TestPurgeFromLogger purges from the logger, as a handler that treats a
// long rent as an incident might: the logger runs on the rent-tracking
// goroutine, which Purge must not wait for.
func TestPurgeFromLogger(t *testing.T) {
	var s *Shuffler
	purged := make(chan error, 1)
	var once sync.Once
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "longer than threshold") {
			once.Do(func() { purged <- s.Purge() })
		}
		return len(p), nil
	}), nil))
	s, err := New(WithRentTracking(10*time.Millisecond), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := Create[uint64](s)
	if _, err := Rent[uint64](s, h); err != nil {
		t.Fatal(err)
	}
	if err := errWithin(t, purged, "Purge from the logger did not return"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := errWithin(t, closed, "Close after a Purge from the logger did not return"); err != nil {
		t.Fatal(err)
	}
}

// TestSecretMemory runs a workload on memfd_secret arenas where the kernel
// allows them.
func TestSecretMemory(t *testing.T) {
	skipUnderLockLimit(t, 1<<20)
	s, err := New(WithSecretMemory(), WithShards(2), WithArenaSize(4096))
	if errors.Is(err, ErrNoSecretMemory) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := model{}
	for i := range 200 {
		h, err := Alloc[byte](s, 1+i)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := RentSlice[byte](s, h)
		for j := range b {
			b[j] = byte(i ^ j)
		}
		m[h] = bytes.Clone(b)
		s.Return(h)
	}
	for range 3 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		if err := s.RotateKey(nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, s)
	verifyModel(t, s, m)
	if st := s.Stats(); st.UnlockedBytes != 0 || st.DumpableBytes != 0 {
		t.Fatalf("secret memory: %+v", st)
	}
}

// TestCopyFromWipesLargeSource: a source the inbox does not take
// (over its 4 KiB slot size) is copied from where it is, and CopyFrom must
// still wipe it once the entry holds the copy.
func TestCopyFromWipesLargeSource(t *testing.T) {
	s := newTest(t)
	src := bytes.Repeat([]byte("large heap secret "), 1000) // 18,000 bytes
	want := bytes.Clone(src)
	h, err := CopyFrom(s, src)
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(src) {
		t.Fatal("CopyFrom did not wipe a source too large for the inbox")
	}
	if got := readAll(t, s, h); !bytes.Equal(got, want) {
		t.Fatal("entry does not hold the source")
	}
}

// skipUnderLockLimit skips a test whose workload in secret memory, which
// counts against RLIMIT_MEMLOCK, needs more than a binding limit below
// need: 200 entries in arenas of 4 KiB take 72 KiB of it with their guard
// pages. TestSecretMemorySmallLimitStoresEntries covers the small limits.
func skipUnderLockLimit(t *testing.T, need int64) {
	t.Helper()
	if lim := osmem.BindingLockLimit(); lim >= 0 && lim < need {
		t.Skipf("needs RLIMIT_MEMLOCK of at least %d bytes for its secret memory, have %d", need, lim)
	}
}

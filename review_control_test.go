//go:build review

package memshuffle

import (
	"bytes"
	"errors"
	"testing"
)

// TestReviewControlReadFromClose is the control of the Close tests: ReadFrom
// pins its rent, and the same sequence finishes with ErrClosed.
func TestReviewControlReadFromClose(t *testing.T) {
	inChild(t, func(t *testing.T) {
		s, _ := New()
		r := &blockingReader{make(chan struct{}), make(chan struct{}), []byte("secret"), false}
		errc := make(chan error, 1)
		go func() { _, err := ReadFrom(s, r, 6); errc <- err }()
		<-r.started
		s.Close()
		close(r.release)
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
	})
}

// TestReviewControlReadFromPurge is the control of the Purge test, and shows
// arenasHold finds a copy planted in a purged arena.
func TestReviewControlReadFromPurge(t *testing.T) {
	s := reviewNew(t)
	secret := bytes.Repeat([]byte("x1y2"), 16)
	_, err := ReadFrom(s, &purgingReader{s: s, secret: bytes.Clone(secret)}, 64)
	t.Log(err)
	if arenasHold(s, secret) {
		t.Fatal("held")
	}
	// Planted: the scan finds a secret written into a purged arena
	s2 := reviewNew(t)
	h, _ := Alloc[byte](s2, 64)
	b, _ := RentSlice[byte](s2, h)
	s2.Purge()
	copy(b, secret)
	if !arenasHold(s2, secret) {
		t.Fatal("scan misses a planted copy")
	}
}

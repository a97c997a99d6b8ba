package memshuffle_test

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memshuffle/memshuffle"
)

// The quick start: keep a value, use it, let the Shuffler move it.
func Example() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := memshuffle.Create[uint64](s)
	if err != nil {
		log.Fatal(err)
	}
	p, err := memshuffle.Rent[uint64](s, h)
	if err != nil {
		log.Fatal(err)
	}
	*p = 0xDEADBEEF
	if err := s.Return(h); err != nil { // encrypted again
		log.Fatal(err)
	}

	if err := s.Shuffle(); err != nil { // moves it, wipes where it was
		log.Fatal(err)
	}

	p, err = memshuffle.Rent[uint64](s, h)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%#x\n", *p)
	s.Return(h)
	// Output: 0xdeadbeef
}

// A secret of any length lives in a byte entry and is written in place.
func ExampleRentSlice() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := memshuffle.Alloc[byte](s, 5)
	if err != nil {
		log.Fatal(err)
	}
	b, err := memshuffle.RentSlice[byte](s, h)
	if err != nil {
		log.Fatal(err)
	}
	copy(b, "hello")
	s.Return(h)

	b, _ = memshuffle.RentSlice[byte](s, h)
	fmt.Println(string(b), len(b))
	s.Return(h)
	// Output: hello 5
}

// Structs of plain data work; types with Go pointers are refused.
func ExampleAlloc() {
	type point struct{ X, Y float64 }
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := memshuffle.Alloc[point](s, 3)
	if err != nil {
		log.Fatal(err)
	}
	pts, _ := memshuffle.RentSlice[point](s, h)
	pts[2] = point{1.5, -2}
	s.Return(h)
	n, _ := s.Size(h)
	fmt.Println("bytes:", n)

	_, err = memshuffle.Create[string](s)
	fmt.Println(errors.Is(err, memshuffle.ErrUnsupportedType))
	// Output:
	// bytes: 48
	// true
}

// Misuse gives errors, never panics.
func ExampleShuffler_Free() {
	s, _ := memshuffle.New()
	defer s.Close()

	h, _ := memshuffle.Create[[32]byte](s)
	memshuffle.Rent[[32]byte](s, h)
	fmt.Println(errors.Is(s.Free(h), memshuffle.ErrBusy)) // rented
	s.Return(h)
	fmt.Println(s.Free(h))
	_, err := memshuffle.Rent[[32]byte](s, h)
	fmt.Println(errors.Is(err, memshuffle.ErrInvalidHandle), s.Valid(h))
	// Output:
	// true
	// <nil>
	// true false
}

// Rotating the key keeps every value.
func ExampleShuffler_RotateKey() {
	s, _ := memshuffle.New()
	defer s.Close()

	h, _ := memshuffle.Create[int64](s)
	p, _ := memshuffle.Rent[int64](s, h)
	*p = -42
	s.Return(h)

	if err := s.RotateKey(nil, nil); err != nil { // fresh random key and salt
		log.Fatal(err)
	}
	p, _ = memshuffle.Rent[int64](s, h)
	fmt.Println(*p, s.Stats().KeyRotations)
	s.Return(h)
	// Output: -42 1
}

// Stats tells what the Shuffler holds and has done.
func ExampleShuffler_Stats() {
	s, _ := memshuffle.New()
	defer s.Close()

	for range 10 {
		memshuffle.Alloc[byte](s, 32)
	}
	s.Shuffle()
	st := s.Stats()
	fmt.Println(st.Entries, st.LiveBytes, st.Shuffles, st.BytesMoved)
	// Output: 10 320 1 320
}

// With shuffle-on-borrow-return, every Return moves the entry.
func ExampleShuffler_SetShuffleOnBorrowReturn() {
	s, _ := memshuffle.New()
	defer s.Close()
	s.SetShuffleOnBorrowReturn(true)

	h, _ := memshuffle.Create[uint32](s)
	p1, _ := memshuffle.Rent[uint32](s, h)
	*p1 = 7
	s.Return(h)
	p2, _ := memshuffle.Rent[uint32](s, h)
	fmt.Println(*p2, p1 != p2)
	s.Return(h)
	// Output: 7 true
}

// Borrow rents, calls and returns, even if the function panics.
func ExampleBorrow() {
	s, _ := memshuffle.New()
	defer s.Close()

	h, _ := memshuffle.Create[[2]uint64](s)
	err := memshuffle.Borrow(s, h, func(p *[2]uint64) error {
		p[0], p[1] = 1, 2
		return nil
	})
	fmt.Println(err)
	memshuffle.BorrowView(s, h, func(p *[2]uint64) error {
		fmt.Println(p[0] + p[1])
		return nil
	})
	// Output:
	// <nil>
	// 3
}

// Many goroutines may view one entry at once: it is decrypted by the first
// and encrypted again when the last one is done.
func ExampleViewSlice() {
	s, _ := memshuffle.New()
	defer s.Close()
	token, _ := memshuffle.CopyFrom(s, []byte("api-token-123"))

	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			memshuffle.BorrowViewSlice(s, token, func(t []byte) error {
				if subtle.ConstantTimeCompare(t, []byte("api-token-123")) == 1 {
					ok.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	st := s.Stats()
	fmt.Println(ok.Load(), st.Rented, st.Viewed)
	// Output: 8 0 0
}

// A secret read from a file goes straight into the entry: os.File reads
// into the rented memory, with no copy on the Go heap.
func ExampleReadFrom() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token")
	os.WriteFile(path, []byte("s3cr3t-from-a-file"), 0o600)

	s, _ := memshuffle.New()
	defer s.Close()
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	h, err := memshuffle.ReadFrom(s, f, int(st.Size()))
	if err != nil {
		log.Fatal(err)
	}
	n, _ := s.Size(h)
	fmt.Println(n)
	// Output: 18
}

// A secret that is already in a []byte (from an environment variable, a
// decoder, a network read) moves in with CopyFrom, which wipes the source.
func ExampleCopyFrom() {
	s, _ := memshuffle.New()
	defer s.Close()

	buf := []byte("handed to you") // stands in for a secret from a decoder or a read
	h, _ := memshuffle.CopyFrom(s, buf)
	fmt.Println(s.Valid(h), bytes.Count(buf, []byte{0}) == len(buf))
	// Output: true true
}

// RentContext waits for a busy entry instead of failing with ErrBusy.
func ExampleRentContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[int](s)

	p, _ := memshuffle.Rent[int](s, h)
	go func() {
		*p = 99
		s.Return(h)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := memshuffle.RentContext[int](ctx, s, h)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(*q)
	s.Return(h)
	// Output: 99
}

// A value read on every request and replaced now and then: readers wait
// out the brief write instead of failing with ErrBusy, and a writer waiting
// for its turn goes ahead of readers that come after it.
func ExampleBorrowViewSliceContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("api-key-1"))
	ctx := context.Background()

	check := func(presented string) bool {
		ok := false
		err := memshuffle.BorrowViewSliceContext(ctx, s, h, func(key []byte) error {
			ok = subtle.ConstantTimeCompare(key, []byte(presented)) == 1
			return nil
		})
		return err == nil && ok
	}
	fmt.Println(check("api-key-1"))

	// Replace the key in place: the same size, so the same entry.
	err := memshuffle.BorrowSliceContext(ctx, s, h, func(key []byte) error {
		copy(key, "api-key-2")
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(check("api-key-1"), check("api-key-2"))
	// Output:
	// true
	// false true
}

// An authenticated cipher reports an entry changed at rest instead of
// handing out altered plaintext.
func ExampleWithCipher() {
	s, _ := memshuffle.New(memshuffle.WithCipher(memshuffle.AES256GCM))
	defer s.Close()

	h, _ := memshuffle.CopyFrom(s, []byte("integrity matters"))
	err := memshuffle.BorrowViewSlice(s, h, func(b []byte) error {
		fmt.Println(string(b))
		return nil
	})
	fmt.Println(err, s.Stats().Tampered)
	// Output:
	// integrity matters
	// <nil> 0
}

// An entry with an expiry is wiped when it passes, and its handle says so.
func ExampleShuffler_SetExpiry() {
	s, _ := memshuffle.New()
	defer s.Close()

	h, _ := memshuffle.CopyFrom(s, []byte("one-time code 123456"))
	s.SetExpiry(h, time.Now().Add(10*time.Millisecond))
	time.Sleep(20 * time.Millisecond)
	_, err := memshuffle.RentSlice[byte](s, h)
	fmt.Println(errors.Is(err, memshuffle.ErrExpired), s.Stats().Expired)
	// Output: true 1
}

// The background shuffler keeps moving entries in small steps until it is
// stopped, its context is done, or the Shuffler is closed.
func ExampleShuffler_StartBackgroundShuffle() {
	s, _ := memshuffle.New()
	defer s.Close()
	for range 100 {
		memshuffle.Alloc[byte](s, 64)
	}
	stop, err := s.StartBackgroundShuffle(context.Background(), 10*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	for s.Stats().BackgroundCycles < 2 {
		time.Sleep(time.Millisecond)
	}
	stop()
	fmt.Println(s.Stats().BytesMoved >= 2*100*64)
	// Output: true
}

// Readers share one decryption through View; a writer has to wait until the
// last of them is done.
func ExampleView() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[[4]uint32](s)
	memshuffle.Borrow(s, h, func(p *[4]uint32) error {
		*p = [4]uint32{1, 2, 3, 4}
		return nil
	})

	a, _ := memshuffle.View[[4]uint32](s, h)
	b, _ := memshuffle.View[[4]uint32](s, h)
	_, err := memshuffle.Rent[[4]uint32](s, h)
	fmt.Println(a == b, a[3], errors.Is(err, memshuffle.ErrBusy), s.Stats().Viewed)
	s.ReturnView(h)
	s.ReturnView(h) // the last view encrypts the entry again
	_, err = memshuffle.Rent[[4]uint32](s, h)
	fmt.Println(err)
	s.Return(h)
	// Output:
	// true 4 true 1
	// <nil>
}

// Purge destroys every secret at once, for a signal or panic handler: a
// slice still rented reads zeros, and every later call fails with ErrClosed.
func ExampleShuffler_Purge() {
	s, _ := memshuffle.New()
	defer s.Close() // unmaps what Purge left mapped

	h, _ := memshuffle.CopyFrom(s, []byte("s3cr3t"))
	b, _ := memshuffle.RentSlice[byte](s, h)
	if err := s.Purge(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(b)
	_, err := memshuffle.Create[int](s)
	fmt.Println(errors.Is(err, memshuffle.ErrClosed))
	// Output:
	// [0 0 0 0 0 0]
	// true
}

// Rent tracking finds a rent that was never returned, with where it began.
func ExampleWithRentTracking() {
	s, _ := memshuffle.New(memshuffle.WithRentTracking(10 * time.Millisecond))
	defer s.Close()

	h, _ := memshuffle.Create[int](s)
	memshuffle.Rent[int](s, h) // and no Return
	time.Sleep(20 * time.Millisecond)
	for _, r := range s.LongRents() {
		fmt.Println(r.Handle == h, strings.Contains(r.Stack, "ExampleWithRentTracking"))
	}
	fmt.Println(s.Stats().LongRents)
	// Output:
	// true true
	// 1
}

// Sub turns two snapshots into what happened between them.
func ExampleStats_Sub() {
	s, _ := memshuffle.New()
	defer s.Close()
	for range 4 {
		memshuffle.Alloc[byte](s, 16)
	}
	s.Shuffle()

	before := s.Stats()
	s.Shuffle()
	s.RotateKey(nil, nil)
	d := s.Stats().Sub(before)
	fmt.Println(d.Shuffles, d.BytesMoved, d.KeyRotations, d.Entries)
	// Output: 1 64 1 4
}

// A default time to live makes every new entry expire on its own.
func ExampleWithDefaultTTL() {
	s, err := memshuffle.New(memshuffle.WithDefaultTTL(10 * time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := memshuffle.CopyFrom(s, []byte("session key"))
	if err == nil {
		time.Sleep(20 * time.Millisecond)
		_, err = memshuffle.RentSlice[byte](s, h)
	}
	// Expired at rest, or, on a machine too busy to copy the value within
	// its time to live, already in CopyFrom, which wiped it.
	fmt.Println(errors.Is(err, memshuffle.ErrExpired))
	// Output: true
}

// Wipe clears a buffer of your own in a way the compiler cannot drop.
func ExampleWipe() {
	pin := []byte("1234")
	memshuffle.Wipe(pin)
	fmt.Println(pin)
	// Output: [0 0 0 0]
}

// Events go to a log/slog logger; none carries a secret, a key or an
// address.
func ExampleWithLogger() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the output the same from run to run
			}
			return a
		},
	}))
	// LockNone only keeps this output the same where the memlock limit is
	// low, which would add a warning; keep the default in real code.
	s, err := memshuffle.New(memshuffle.WithLogger(logger), memshuffle.WithLockMode(memshuffle.LockNone))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.RotateKey(nil, nil); err != nil {
		log.Fatal(err)
	}
	// Output: level=INFO msg="memshuffle: key rotated" rotations=1
}

// Options are checked by New: a value out of range is an error, not a
// silent default.
func ExampleNew() {
	s, err := memshuffle.New(
		memshuffle.WithShards(8),
		memshuffle.WithCipher(memshuffle.ChaCha20Poly1305),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Close(), s.Close()) // Close is idempotent

	_, err = memshuffle.New(memshuffle.WithShards(3)) // not a power of two
	fmt.Println(errors.Is(err, memshuffle.ErrInvalidOption))
	// Output:
	// <nil> <nil>
	// true
}

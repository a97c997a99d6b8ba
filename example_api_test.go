package memshuffle_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"expvar"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/memshuffle/memshuffle"
)

// Rent hands out the entry decrypted in place; the pointer is good only
// until Return, which encrypts it again.
func ExampleRent() {
	type login struct {
		User [16]byte
		PIN  uint32
	}
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, _ := memshuffle.Create[login](s)
	l, err := memshuffle.Rent[login](s, h)
	if err != nil {
		log.Fatal(err)
	}
	copy(l.User[:], "alice")
	l.PIN = 4321
	if err := s.Return(h); err != nil {
		log.Fatal(err)
	}

	l, _ = memshuffle.Rent[login](s, h) // l from the first Rent is stale now
	fmt.Println(string(bytes.TrimRight(l.User[:], "\x00")), l.PIN)
	s.Return(h)
	// Output: alice 4321
}

// Create makes one zeroed value of its type; Alloc makes several.
func ExampleCreate() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := memshuffle.Create[[4]uint64](s)
	if err != nil {
		log.Fatal(err)
	}
	n, _ := s.Size(h)
	memshuffle.BorrowView(s, h, func(p *[4]uint64) error {
		fmt.Println(n, *p)
		return nil
	})
	// Output: 32 [0 0 0 0]
}

// A key file goes into an entry as PKCS#8 DER, ready for NewSigner; what
// was read on the way is wiped.
func ExampleReadPrivateKey() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Stands in for a key file: an Ed25519 key from a fixed seed, as PEM.
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	der, _ := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	file := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	h, err := memshuffle.ReadPrivateKey(s, bytes.NewReader(file))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := memshuffle.NewSigner(s, h)
	if err != nil {
		log.Fatal(err)
	}
	msg := []byte("release v1.2.3")
	sig, err := signer.Sign(nil, msg, crypto.Hash(0)) // Ed25519 signs the message itself
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified:", ed25519.Verify(signer.Public().(ed25519.PublicKey), msg, sig))

	_, err = memshuffle.ReadPrivateKey(s, strings.NewReader("not a key"))
	fmt.Println(errors.Is(err, memshuffle.ErrInvalidKey))
	// Output:
	// verified: true
	// true
}

// Whether callbacks run inside runtime/secret's secret.Do is fixed when the
// program is built; Stats carries the same answer to a monitoring system.
func ExampleSecretMode() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	fmt.Println(s.Stats().SecretMode == memshuffle.SecretMode())
	// Output: true
}

// A program that holds secrets turns core dumps off first thing in main.
//
// This example has no Output line, so go test compiles it but does not run
// it: DisableCoreDumps would make the test process non-dumpable for the
// rest of its life, and the tests that inspect it with gcore, ptrace or
// /proc/self/mem would then fail.
func ExampleDisableCoreDumps() {
	if err := memshuffle.DisableCoreDumps(); err != nil {
		log.Fatal(err)
	}
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// ... copies of rented values made from here on stay out of dumps too.
}

// On SIGINT or SIGTERM the Shufflers are purged before the process exits;
// stop removes the handler again, for a normal exit.
func ExamplePurgeOnSignal() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	stop := memshuffle.PurgeOnSignal(s)
	defer stop()

	h, _ := memshuffle.Random(s, 32)
	fmt.Println(s.Valid(h))
	// Output: true
}

// BorrowSlice lends the whole entry as a slice, for writing in place.
func ExampleBorrowSlice() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Alloc[uint32](s, 4)

	err := memshuffle.BorrowSlice(s, h, func(v []uint32) error {
		for i := range v {
			v[i] = uint32(i * i)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	memshuffle.BorrowViewSlice(s, h, func(v []uint32) error {
		fmt.Println(v)
		return nil
	})
	// Output: [0 1 4 9]
}

// fn's error comes back from BorrowView, and the view is ended either way.
func ExampleBorrowView() {
	type limits struct{ MaxConns, MaxRPS uint32 }
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[limits](s)
	memshuffle.Borrow(s, h, func(l *limits) error {
		*l = limits{MaxConns: 100, MaxRPS: 0}
		return nil
	})

	errZero := errors.New("no requests allowed")
	err := memshuffle.BorrowView(s, h, func(l *limits) error {
		if l.MaxRPS == 0 {
			return errZero
		}
		return nil
	})
	fmt.Println(errors.Is(err, errZero), s.Stats().Viewed)
	// Output: true 0
}

// Work on a secret without copying it out: here, a fingerprint of a token
// to log in its place.
func ExampleBorrowViewSlice() {
	s, _ := memshuffle.New()
	defer s.Close()
	token, _ := memshuffle.CopyFrom(s, []byte("api-token-123"))

	var sum [sha256.Size]byte
	err := memshuffle.BorrowViewSlice(s, token, func(t []byte) error {
		sum = sha256.Sum256(t)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("token %x\n", sum[:8])
	// Output: token 9bdb81d121b42d1c
}

// BorrowContext waits for a rented entry instead of failing with ErrBusy,
// until the context is done; fn is then never called.
func ExampleBorrowContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[uint64](s)

	memshuffle.Rent[uint64](s, h) // held elsewhere
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := memshuffle.BorrowContext(ctx, s, h, func(n *uint64) error {
		*n++
		return nil
	})
	fmt.Println(errors.Is(err, context.DeadlineExceeded))

	s.Return(h)
	err = memshuffle.BorrowContext(context.Background(), s, h, func(n *uint64) error {
		*n++
		return nil
	})
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

// A writer waits for readers to finish with the entry before it writes.
func ExampleBorrowSliceContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("old-password"))

	memshuffle.ViewSlice[byte](s, h) // a reader, done in a moment
	go func() {
		time.Sleep(10 * time.Millisecond)
		s.ReturnView(h)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := memshuffle.BorrowSliceContext(ctx, s, h, func(b []byte) error {
		copy(b, "new-password")
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	memshuffle.BorrowViewSlice(s, h, func(b []byte) error {
		fmt.Println(string(b))
		return nil
	})
	// Output: new-password
}

// A reader waits out a writer, and sees what it wrote.
func ExampleBorrowViewContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[uint32](s)

	p, _ := memshuffle.Rent[uint32](s, h)
	go func() {
		*p = 8080
		s.Return(h)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := memshuffle.BorrowViewContext(ctx, s, h, func(port *uint32) error {
		fmt.Println(*port)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: 8080
}

// Seal and Open under a key held in an entry: its key schedule exists only
// for the length of each call. The key and nonce are fixed here so that the
// output can be checked; a real key comes from Random or a file.
func ExampleAEAD_Seal() {
	s, _ := memshuffle.New()
	defer s.Close()
	raw, _ := hex.DecodeString("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
	key, _ := memshuffle.CopyFrom(s, raw) // wipes raw
	aead, err := memshuffle.NewAEAD(s, key)
	if err != nil {
		log.Fatal(err)
	}

	nonce, _ := hex.DecodeString("cafebabefacedbaddecaf888") // never twice under one key
	sealed, err := aead.Seal(nil, nonce, []byte("attack at dawn"), []byte("v1"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%x\n", sealed)
	opened, err := aead.Open(nil, nonce, sealed, []byte("v1"))
	fmt.Printf("%q %v\n", opened, err)
	// Output:
	// ea6887b402b95b8325065a07f21fc763acf328e871f84c6f996a61d7209b
	// "attack at dawn" <nil>
}

// A message grows by Overhead bytes when sealed, and needs a nonce of
// NonceSize bytes.
func ExampleAEAD_NonceSize() {
	s, _ := memshuffle.New()
	defer s.Close()
	key, _ := memshuffle.Random(s, 32)
	aead, err := memshuffle.NewAEAD(s, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(aead.NonceSize(), aead.Overhead())
	// Output: 12 16
}

// The zero Handle is never valid: a missing map entry shows up as one.
func ExampleHandle_IsZero() {
	s, _ := memshuffle.New()
	defer s.Close()

	keys := map[string]memshuffle.Handle{}
	keys["db"], _ = memshuffle.Random(s, 32)
	fmt.Println(keys["db"].IsZero(), keys["smtp"].IsZero())
	// Output: false true
}

// A Handle prints without its entry's contents or address; the issuing
// Shuffler's random identity is part of it, so Handles of different
// Shufflers print differently.
func ExampleHandle_String() {
	s1, _ := memshuffle.New()
	defer s1.Close()
	s2, _ := memshuffle.New()
	defer s2.Close()

	h1, _ := memshuffle.Create[uint64](s1)
	h2, _ := memshuffle.Create[uint64](s2)
	fmt.Println(h1.String() != h2.String())
	fmt.Println(memshuffle.Handle{})
	// Output:
	// true
	// memshuffle.Handle(zero)
}

// Ciphers print as the documentation names them, for logs.
func ExampleCipher_String() {
	fmt.Println(memshuffle.AES256CTR)
	fmt.Println(memshuffle.AES256GCM)
	fmt.Println(memshuffle.ChaCha20Poly1305)
	fmt.Println(memshuffle.Cipher(7))
	// Output:
	// AES-256-CTR
	// AES-256-GCM
	// ChaCha20-Poly1305
	// Cipher(7)
}

// Larger arenas mean fewer mappings for a Shuffler that holds much; sizes
// out of range are refused.
func ExampleWithArenaSize() {
	s, err := memshuffle.New(memshuffle.WithArenaSize(1<<20), memshuffle.WithShards(1))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	memshuffle.Alloc[byte](s, 32)
	fmt.Println(s.Stats().MappedBytes)

	_, err = memshuffle.New(memshuffle.WithArenaSize(1<<30 + 1))
	fmt.Println(errors.Is(err, memshuffle.ErrInvalidOption))
	// Output:
	// 1048576
	// true
}

// The background shuffler runs from New until Close; there is only one.
func ExampleWithBackgroundShuffle() {
	s, err := memshuffle.New(memshuffle.WithBackgroundShuffle(10 * time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // stops it

	h, _ := memshuffle.Create[uint64](s)
	p, _ := memshuffle.Rent[uint64](s, h) // a rented entry stays put
	*p = 42
	s.Return(h)
	for s.Stats().BackgroundCycles < 1 {
		time.Sleep(time.Millisecond)
	}
	p, _ = memshuffle.Rent[uint64](s, h)
	fmt.Println(*p)
	s.Return(h)

	_, err = s.StartBackgroundShuffle(context.Background(), time.Second)
	fmt.Println(errors.Is(err, memshuffle.ErrBackgroundRunning))
	// Output:
	// 42
	// true
}

// LockBestEffort, the default, keeps working where the system will not lock
// memory, and Stats says how much stayed unlocked, for a health check.
func ExampleWithLockMode() {
	s, err := memshuffle.New(memshuffle.WithLockMode(memshuffle.LockBestEffort))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, _ := memshuffle.CopyFrom(s, []byte("s3cr3t"))
	if st := s.Stats(); st.UnlockedBytes > 0 {
		log.Printf("%d bytes may be swapped out; raise RLIMIT_MEMLOCK", st.UnlockedBytes)
	}
	memshuffle.BorrowViewSlice(s, h, func(b []byte) error {
		fmt.Println(string(b))
		return nil
	})
	// Output: s3cr3t
}

// Secret memory is not everywhere: fall back to ordinary arenas where the
// kernel has no memfd_secret, or RLIMIT_MEMLOCK leaves no room for it.
func ExampleWithSecretMemory() {
	// Secret memory is always locked, against a limit often of 64 KiB:
	// small arenas keep a few small secrets within it.
	s, err := memshuffle.New(memshuffle.WithSecretMemory(), memshuffle.WithArenaSize(4<<10))
	if errors.Is(err, memshuffle.ErrNoSecretMemory) || errors.Is(err, memshuffle.ErrLockFailed) {
		s, err = memshuffle.New()
	}
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := memshuffle.CopyFrom(s, []byte("s3cr3t"))
	if err != nil {
		log.Fatal(err)
	}
	memshuffle.BorrowViewSlice(s, h, func(b []byte) error {
		fmt.Println(string(b))
		return nil
	})
	// Output: s3cr3t
}

// One shard suits a small Shuffler used by few goroutines: its entries
// share one arena.
func ExampleWithShards() {
	s, err := memshuffle.New(memshuffle.WithShards(1))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	for range 8 {
		memshuffle.Random(s, 32)
	}
	st := s.Stats()
	fmt.Println(st.Entries, st.Arenas)
	// Output: 8 1
}

// With shuffle-on-borrow-return from the start, an entry moves every time
// it is used.
func ExampleWithShuffleOnBorrowReturn() {
	s, err := memshuffle.New(memshuffle.WithShuffleOnBorrowReturn(true))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, _ := memshuffle.Create[uint64](s)
	memshuffle.Borrow(s, h, func(p *uint64) error {
		*p = 7
		return nil
	})
	fmt.Println(s.Stats().BytesMoved >= 8)
	// Output: true
}

// Close wipes every entry and unmaps it all; later calls fail with
// ErrClosed.
func ExampleShuffler_Close() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	h, _ := memshuffle.CopyFrom(s, []byte("s3cr3t"))

	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	_, err = memshuffle.RentSlice[byte](s, h)
	fmt.Println(errors.Is(err, memshuffle.ErrClosed), s.Valid(h), s.Stats().Entries)
	// Output: true false 0
}

// Expiry reports when an entry will be wiped, or the zero Time.
func ExampleShuffler_Expiry() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("one-time code"))

	exp, _ := s.Expiry(h)
	fmt.Println(exp.IsZero())
	deadline := time.Now().Add(time.Hour)
	s.SetExpiry(h, deadline)
	exp, _ = s.Expiry(h)
	fmt.Println(exp.Equal(deadline))
	// Output:
	// true
	// true
}

// LongRents lists what is held past the WithRentTracking threshold, until
// it is returned.
func ExampleShuffler_LongRents() {
	s, _ := memshuffle.New(memshuffle.WithRentTracking(10 * time.Millisecond))
	defer s.Close()
	h, _ := memshuffle.Create[uint64](s)

	memshuffle.View[uint64](s, h)
	time.Sleep(20 * time.Millisecond)
	fmt.Println(len(s.LongRents()))
	s.ReturnView(h)
	fmt.Println(len(s.LongRents()))
	// Output:
	// 1
	// 0
}

// Stats are served at /debug/vars under one name per process.
func ExampleShuffler_PublishExpvar() {
	s, _ := memshuffle.New()
	defer s.Close()

	// expvar cannot unpublish a name, so it stays taken for the life of
	// the process: a second run of this example in one process meets
	// ErrNameTaken.
	const name = "memshuffle_example_publish"
	if err := s.PublishExpvar(name); err != nil && !errors.Is(err, memshuffle.ErrNameTaken) {
		log.Fatal(err)
	}
	fmt.Println(expvar.Get(name) != nil)
	fmt.Println(errors.Is(s.PublishExpvar(name), memshuffle.ErrNameTaken))
	// Output:
	// true
	// true
}

// Return once per Rent; a second Return of a rent already ended is
// reported.
func ExampleShuffler_Return() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[uint64](s)

	p, _ := memshuffle.Rent[uint64](s, h)
	*p = 1
	fmt.Println(s.Return(h))
	fmt.Println(errors.Is(s.Return(h), memshuffle.ErrNotRented))
	// Output:
	// <nil>
	// true
}

// End each View with ReturnView; a deferred one covers every path.
func ExampleShuffler_ReturnView() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[uint64](s)
	memshuffle.Borrow(s, h, func(p *uint64) error { *p = 443; return nil })

	read := func() uint64 {
		p, err := memshuffle.View[uint64](s, h)
		if err != nil {
			log.Fatal(err)
		}
		defer s.ReturnView(h)
		return *p
	}
	fmt.Println(read(), s.Stats().Viewed)
	fmt.Println(errors.Is(s.ReturnView(h), memshuffle.ErrNotRented))
	// Output:
	// 443 0
	// true
}

// Shuffle moves what is at rest and leaves rented entries where they are;
// every Handle stays valid.
func ExampleShuffler_Shuffle() {
	s, _ := memshuffle.New()
	defer s.Close()
	inUse, _ := memshuffle.CopyFrom(s, []byte("12345678"))
	atRest, _ := memshuffle.CopyFrom(s, []byte("abcdefgh"))

	b, _ := memshuffle.RentSlice[byte](s, inUse)
	if err := s.Shuffle(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b), s.Stats().BytesMoved, s.Valid(atRest)) // only atRest moved
	s.Return(inUse)
	// Output: 12345678 8 true
}

// An entry's size is public, and known without decrypting it.
func ExampleShuffler_Size() {
	s, _ := memshuffle.New()
	defer s.Close()

	a, _ := memshuffle.Alloc[uint32](s, 10)
	b, _ := memshuffle.CopyFrom(s, []byte("hunter2"))
	na, _ := s.Size(a)
	nb, _ := s.Size(b)
	fmt.Println(na, nb)
	// Output: 40 7
}

// Valid says whether a Handle still names a live entry of this Shuffler.
func ExampleShuffler_Valid() {
	s, _ := memshuffle.New()
	defer s.Close()
	other, _ := memshuffle.New()
	defer other.Close()

	h, _ := memshuffle.Random(s, 16)
	fmt.Println(s.Valid(h), other.Valid(h), s.Valid(memshuffle.Handle{}))
	s.Free(h)
	fmt.Println(s.Valid(h))
	// Output:
	// true false false
	// false
}

// Open refuses a message changed on the way, and gives nothing of it.
func ExampleAEAD_Open() {
	s, _ := memshuffle.New()
	defer s.Close()
	key, _ := memshuffle.Random(s, 32)
	aead, err := memshuffle.NewAEAD(s, key)
	if err != nil {
		log.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize()) // a counter or random, never twice under one key
	sealed, _ := aead.Seal(nil, nonce, []byte("transfer 10"), nil)

	sealed[9] ^= 1 // one bit flipped in transit
	opened, err := aead.Open(nil, nonce, sealed, nil)
	fmt.Println(len(opened), errors.Is(err, memshuffle.ErrAuthFailed))
	// Output: 0 true
}

// A reader with a deadline gives up on an entry a writer holds too long,
// and the entry is the writer's still.
func ExampleViewSliceContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("token-1"))

	memshuffle.RentSlice[byte](s, h) // a writer that does not return in time
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := memshuffle.ViewSliceContext[byte](ctx, s, h)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))

	s.Return(h)
	b, _ := memshuffle.ViewSliceContext[byte](context.Background(), s, h)
	fmt.Println(string(b))
	s.ReturnView(h)
	// Output:
	// true
	// token-1
}

// Overhead is how much longer Seal makes a message: with that much spare
// capacity, a message sealed in place (dst = msg[:0]) needs no new buffer.
func ExampleAEAD_Overhead() {
	s, _ := memshuffle.New()
	defer s.Close()
	key, _ := memshuffle.Random(s, 32)
	aead, err := memshuffle.NewAEAD(s, key)
	if err != nil {
		log.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		log.Fatal(err)
	}
	msg := make([]byte, 0, 5+aead.Overhead())
	msg = append(msg, "hello"...)
	sealed, err := aead.Seal(msg[:0], nonce, msg, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(sealed), &sealed[0] == &msg[0])
	// Output: 21 true
}

// A writer that waits, up to a deadline, for the readers of an entry to
// be done with it, instead of failing with ErrBusy.
func ExampleRentSliceContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("v1"))

	v, _ := memshuffle.ViewSlice[byte](s, h) // a reader
	fmt.Println(string(v))
	go func() {
		time.Sleep(10 * time.Millisecond)
		s.ReturnView(h)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := memshuffle.RentSliceContext[byte](ctx, s, h)
	if err != nil {
		log.Fatal(err)
	}
	copy(b, "v2")
	s.Return(h)

	v, _ = memshuffle.ViewSlice[byte](s, h)
	fmt.Println(string(v))
	s.ReturnView(h)
	// Output:
	// v1
	// v2
}

// A reader of a typed value that waits, up to a deadline, for a writer
// to return it.
func ExampleViewContext() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Create[uint64](s)

	p, _ := memshuffle.Rent[uint64](s, h) // a writer, still at work
	go func() {
		*p = 42
		s.Return(h)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := memshuffle.ViewContext[uint64](ctx, s, h)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(*v)
	s.ReturnView(h)
	// Output: 42
}

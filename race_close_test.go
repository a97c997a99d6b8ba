package memshuffle

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

const lendSize = 4096

// lender is one way the library runs the caller's code on an entry's
// memory: a Borrow function or the io.Reader of ReadFrom. run calls fn on the
// bytes of the entry h (ReadFrom makes its own entry and ignores h).
type lender struct {
	name   string
	shared bool // a view: fn must only read
	run    func(s *Shuffler, h Handle, fn func([]byte)) error
}

// fnReader is an io.Reader that hands the memory it is given to fn.
type fnReader func([]byte)

func (r fnReader) Read(p []byte) (int, error) {
	r(p)
	return len(p), nil
}

var lenders = []lender{
	{"Borrow", false, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return Borrow(s, h, func(p *[lendSize]byte) error { fn(p[:]); return nil })
	}},
	{"BorrowSlice", false, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowSlice(s, h, func(b []byte) error { fn(b); return nil })
	}},
	{"BorrowContext", false, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowContext(context.Background(), s, h, func(p *[lendSize]byte) error { fn(p[:]); return nil })
	}},
	{"BorrowSliceContext", false, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowSliceContext(context.Background(), s, h, func(b []byte) error { fn(b); return nil })
	}},
	{"BorrowView", true, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowView(s, h, func(p *[lendSize]byte) error { fn(p[:]); return nil })
	}},
	{"BorrowViewSlice", true, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowViewSlice(s, h, func(b []byte) error { fn(b); return nil })
	}},
	{"BorrowViewContext", true, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowViewContext(context.Background(), s, h, func(p *[lendSize]byte) error { fn(p[:]); return nil })
	}},
	{"BorrowViewSliceContext", true, func(s *Shuffler, h Handle, fn func([]byte)) error {
		return BorrowViewSliceContext(context.Background(), s, h, func(b []byte) error { fn(b); return nil })
	}},
	{"ReadFrom", false, func(s *Shuffler, _ Handle, fn func([]byte)) error {
		_, err := ReadFrom(s, fnReader(fn), lendSize)
		return err
	}},
}

// touch reads all of b, or writes all of it, as a callback would.
func touch(b []byte, write bool) {
	if write {
		for i := range b {
			b[i] = byte(i) | 1
		}
		return
	}
	var x byte
	for _, c := range b {
		x |= c
	}
	runtime.KeepAlive(x)
}

// TestCloseDuringLend closes the Shuffler while a Borrow function or a fill
// is running, from another goroutine and from inside the callback, which
// then goes on using the entry's memory after Close returned. Unmapping that
// memory under it would be a fatal fault; instead the callback runs to its
// end and its caller gets ErrClosed.
func TestCloseDuringLend(t *testing.T) {
	for _, l := range lenders {
		for _, inside := range []bool{false, true} {
			name := l.name + map[bool]string{false: "/other-goroutine", true: "/inside"}[inside]
			t.Run(name, func(t *testing.T) {
				for _, c := range []Cipher{AES256CTR, AES256GCM} {
					s, err := New(WithShards(2), WithCipher(c))
					if err != nil {
						t.Fatal(err)
					}
					h, err := Alloc[byte](s, lendSize)
					if err != nil {
						t.Fatal(err)
					}
					started, closed := make(chan struct{}), make(chan error, 1)
					if !inside {
						go func() {
							<-started
							closed <- s.Close()
						}()
					}
					err = l.run(s, h, func(b []byte) {
						if inside {
							closed <- s.Close()
						} else {
							close(started)
						}
						if err := <-closed; err != nil {
							t.Error(err)
						}
						// Close has returned: the memory must still be there.
						touch(b, !l.shared)
					})
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("%v: got %v, want ErrClosed", c, err)
					}
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					for i := range s.shards {
						if sh := &s.shards[i]; sh.pins != 0 || len(sh.orphans) != 0 {
							t.Fatalf("shard %d: %d pins, %d regions left mapped", i, sh.pins, len(sh.orphans))
						}
					}
				}
			})
		}
	}
}

// TestPurgeDuringLend purges while a Borrow function or a fill writes a
// secret, from another goroutine and from inside the callback, which writes
// the secret after Purge returned. While the first callback runs the scan
// finds its secret in the entry (so the scan sees that memory); once each
// caller has got ErrClosed, no secret is anywhere in the process.
func TestPurgeDuringLend(t *testing.T) {
	var secrets []*memscan.Pattern
	var names []string
	for _, l := range lenders {
		if l.shared {
			continue // views do not write
		}
		for _, inside := range []bool{false, true} {
			name := l.name + map[bool]string{false: "/other-goroutine", true: "/inside"}[inside]
			s := newTest(t, WithShards(2))
			h, err := Alloc[byte](s, lendSize)
			if err != nil {
				t.Fatal(err)
			}
			purged := make(chan error, 1)
			var secret *memscan.Pattern
			err = l.run(s, h, func(b []byte) {
				if inside {
					purged <- s.Purge()
				} else {
					go func() { purged <- s.Purge() }()
				}
				if err := <-purged; err != nil {
					t.Error(err)
				}
				// Generated in place: the entry holds the only copy.
				if _, err := rand.Read(b); err != nil {
					t.Error(err)
				}
				var err error
				if secret, err = memscan.NewPattern(b); err != nil {
					t.Error(err)
					return
				}
				if len(secrets) == 0 && !raceBuild {
					if n := len(scanSelf(t, secret)); n != 1 {
						t.Errorf("control: the secret written after Purge found %d times, want 1", n)
					}
				}
			})
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("%s: got %v, want ErrClosed", name, err)
			}
			if secret == nil {
				t.Fatalf("%s: callback did not run", name)
			}
			mustCheck(t, s)
			secrets, names = append(secrets, secret), append(names, name)
		}
	}
	if raceBuild {
		return // the calls raced Purge; the scans are left to the other builds (skipScanUnderRace)
	}
	hits, err := memscan.ScanProcessAll(os.Getpid(), secrets)
	if errors.Is(err, memscan.ErrUnsupported) {
		t.Skip("no process memory scanner on this platform")
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hits {
		if len(h) != 0 {
			t.Errorf("after Purge and the end of %s: the secret found %d times", names[i], len(h))
		}
	}
}

// TestCloseRacesLend runs Close and Purge against every lender, and against
// CopyFrom of 1 MiB, at random moments, many times: no fault, a nil error
// or ErrClosed, and CopyFrom's source wiped exactly when it succeeded.
func TestCloseRacesLend(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	src := make([]byte, 1<<20)
	orig := make([]byte, len(src))
	for _, end := range []string{"Close", "Purge"} {
		t.Run(end, func(t *testing.T) {
			for r := range rounds {
				s, err := New(WithShards(2))
				if err != nil {
					t.Fatal(err)
				}
				h, err := Alloc[byte](s, lendSize)
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for _, l := range lenders {
					wg.Go(func() {
						for {
							err := l.run(s, h, func(b []byte) { touch(b, !l.shared) })
							if errors.Is(err, ErrClosed) {
								return
							}
							if err != nil && !errors.Is(err, ErrBusy) {
								t.Errorf("%s: %v", l.name, err)
								return
							}
						}
					})
				}
				wg.Go(func() {
					for {
						for i := range src {
							src[i] = byte(i>>8) | 1
						}
						copy(orig, src)
						_, err := CopyFrom(s, src)
						switch {
						case err == nil:
							if !allZero(src) {
								t.Error("CopyFrom succeeded and left its source")
							}
						case errors.Is(err, ErrClosed):
							if !bytes.Equal(src, orig) {
								t.Error("CopyFrom failed and wiped its source")
							}
							return
						default:
							t.Errorf("CopyFrom: %v", err)
							return
						}
					}
				})
				time.Sleep(time.Duration(mrand.IntN(2000)) * time.Microsecond)
				if end == "Close" {
					err = s.Close()
				} else {
					err = s.Purge()
				}
				if err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				if end == "Purge" {
					mustCheck(t, s)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if t.Failed() {
					t.Fatalf("round %d", r)
				}
			}
		})
	}
}

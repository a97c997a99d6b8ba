package memshuffle

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"expvar"
	"fmt"
	"log"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// handlerFunc is a slog.Handler that calls itself with each record and
// holds no lock of its own, unlike slog's handlers, so that a test of the
// library's locks does not wait on the handler's.
type handlerFunc func(slog.Record)

func (f handlerFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (f handlerFunc) Handle(_ context.Context, r slog.Record) error { f(r); return nil }
func (f handlerFunc) WithAttrs([]slog.Attr) slog.Handler            { return f }
func (f handlerFunc) WithGroup(string) slog.Handler                 { return f }

// TestSignFromLogger: a WithLogger handler that signs with a Signer of the
// same Shuffler, as one that signs its audit records might, while a
// signature of that Signer raised the event it handles. Sign handed the
// events its borrow of the key raised to the handler while it held its
// turn of the key pool, and once every turn was taken (one for Ed25519,
// GOMAXPROCS for ECDSA) the handler's Sign waited for ever for one.
func TestSignFromLogger(t *testing.T) {
	for _, c := range []struct {
		name string
		key  any
		opts crypto.SignerOpts
	}{
		{"Ed25519", testKeys()[0].priv, crypto.Hash(0)},
		{"ECDSA", testKeys()[1].priv, crypto.SHA256},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sg atomic.Pointer[crypto.Signer]
			var handled atomic.Int32
			most := int32(runtime.GOMAXPROCS(0) + 1) // more than the turns
			errs := make(chan error, most)
			digest := sha256.Sum256([]byte("an audit record"))
			logger := slog.New(handlerFunc(func(r slog.Record) {
				k := sg.Load()
				if k == nil || !strings.Contains(r.Message, "failed authentication") || handled.Add(1) > most {
					return
				}
				_, err := (*k).Sign(rand.Reader, digest[:], c.opts)
				errs <- err
			}))
			s, err := New(WithCipher(AES256GCM), WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			h := mustCopyFrom(t, s, pkcs8(t, c.key))
			k, err := NewSigner(s, h)
			if err != nil {
				t.Fatal(err)
			}
			sg.Store(&k)
			tamperWith(t, s, h)
			err = returnsWithin(t, func() error {
				_, err := k.Sign(rand.Reader, digest[:], c.opts)
				return err
			})
			if !errors.Is(err, ErrTampered) {
				t.Errorf("Sign of a tampered key: %v, want ErrTampered", err)
			}
			if n := handled.Load(); n < most {
				t.Fatalf("the handler saw %d events, want %d or more", n, most)
			}
			for range most {
				if err := <-errs; !errors.Is(err, ErrTampered) {
					t.Errorf("the handler's Sign: %v, want ErrTampered", err)
				}
			}
		})
	}
}

// TestPublishExpvarFromLogOutput: PublishExpvar of a name that code
// outside the package publishes meanwhile makes expvar write to the log
// package's output before it panics, and that output is the program's
// code. It ran under PublishExpvar's lock: output that published another
// Shuffler's Stats waited for ever, and with it every log.Print of the
// process, on the log package's own lock.
func TestPublishExpvarFromLogOutput(t *testing.T) {
	s, s2 := newTest(t), newTest(t)
	name := fmt.Sprintf("memshuffle-test-log-output-%d", time.Now().UnixNano())
	expvarHookForTest = func() { expvar.Publish(name, expvar.Func(func() any { return 1 })) }
	t.Cleanup(func() { expvarHookForTest = nil })
	var inner atomic.Pointer[error]
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(writerFunc(func(p []byte) (int, error) {
		expvarHookForTest = nil
		err := s2.PublishExpvar(name + "-second")
		inner.Store(&err)
		return len(p), nil
	}))
	t.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })
	err := returnsWithin(t, func() error { return s.PublishExpvar(name) })
	if !errors.Is(err, ErrNameTaken) {
		t.Errorf("PublishExpvar of a name published meanwhile: %v, want ErrNameTaken", err)
	}
	if e := inner.Load(); e == nil || *e != nil {
		t.Errorf("PublishExpvar from the log output: %v, want it published", e)
	}
}

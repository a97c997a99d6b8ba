package memshuffle

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/memshuffle/memshuffle/internal/secretmode"
)

// TestSecretModeReported checks that Stats and SecretMode agree, and that
// secret mode is on exactly in a runtimesecret build on a platform that
// has it.
func TestSecretModeReported(t *testing.T) {
	s := newTest(t)
	if got := s.Stats().SecretMode; got != SecretMode() {
		t.Fatalf("Stats().SecretMode = %v, SecretMode() = %v", got, SecretMode())
	}
	supported := runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64")
	if SecretMode() && !(experimentOn && supported) {
		t.Fatalf("SecretMode() = true in a build without runtime/secret (experiment %v, %s/%s)", experimentOn, runtime.GOOS, runtime.GOARCH)
	}
	if experimentOn && supported && !SecretMode() {
		t.Fatal("SecretMode() = false in a runtimesecret build on linux")
	}
}

// TestCallbacksRunInSecretMode checks every way a callback gets plaintext:
// in secret mode each runs inside secret.Do, and otherwise none does.
func TestCallbacksRunInSecretMode(t *testing.T) {
	s := newTest(t)
	h, err := CopyFrom(s, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string) {
		t.Helper()
		if got := secretmode.Active(); got != SecretMode() {
			t.Errorf("%s: inside secret.Do = %v, want %v", name, got, SecretMode())
		}
	}
	Borrow(s, h, func(*[32]byte) error { check("Borrow"); return nil })
	BorrowSlice(s, h, func([]byte) error { check("BorrowSlice"); return nil })
	BorrowView(s, h, func(*[32]byte) error { check("BorrowView"); return nil })
	BorrowViewSlice(s, h, func([]byte) error { check("BorrowViewSlice"); return nil })
	BorrowContext(t.Context(), s, h, func(*[32]byte) error { check("BorrowContext"); return nil })
	BorrowSliceContext(t.Context(), s, h, func([]byte) error { check("BorrowSliceContext"); return nil })
	BorrowViewContext(t.Context(), s, h, func(*[32]byte) error { check("BorrowViewContext"); return nil })
	BorrowViewSliceContext(t.Context(), s, h, func([]byte) error { check("BorrowViewSliceContext"); return nil })
	if _, err := ReadFrom(s, readerFunc(func(p []byte) (int, error) {
		check("ReadFrom's Read")
		return copy(p, make([]byte, len(p))), nil
	}), 16); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteTo(s, h, writerFunc(func(p []byte) (int, error) {
		check("WriteTo's Write")
		return len(p), nil
	})); err != nil {
		t.Fatal(err)
	}
	// Yields "k\n" a byte a call, then io.EOF.
	eof := func(name string) io.Reader {
		rest := []byte("k\n")
		return readerFunc(func(p []byte) (int, error) {
			check(name)
			if len(rest) == 0 {
				return 0, io.EOF
			}
			p[0], rest = rest[0], rest[1:]
			return 1, nil
		})
	}
	if _, err := ReadAll(s, eof("ReadAll's Read"), 16); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadUntil(s, eof("ReadUntil's Read"), '\n', 16); err != nil {
		t.Fatal(err)
	}
	if secretmode.Active() {
		t.Error("still in secret mode after the callbacks returned")
	}
}

// TestSecretModePanic checks that a panic in a callback still ends the
// rent and comes out with its own value in both builds.
func TestSecretModePanic(t *testing.T) {
	s := newTest(t)
	h, _ := Alloc[byte](s, 16)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		BorrowSlice(s, h, func([]byte) error { panic("boom") })
	}()
	if st := s.Stats(); st.Rented+st.Viewed != 0 {
		t.Fatalf("%d entries still rented after the panic", st.Rented+st.Viewed)
	}
}

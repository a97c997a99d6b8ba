package memshuffle

import (
	"bytes"
	"io"
	"testing"
)

// secretCheckWriter is an io.Writer made of a function.
type secretCheckWriter func([]byte) (int, error)

func (f secretCheckWriter) Write(p []byte) (int, error) { return f(p) }

// TestIOCallbacksRunInSecretMode: SecretMode says every callback the
// library runs with plaintext runs inside secret.Do. WriteTo hands the
// entry's plaintext to w.Write, and ReadAll and ReadUntil have r.Read
// write plaintext into an entry, as ReadFrom does; in a runtimesecret
// build all three ran as plain calls, so whatever the writer or reader
// left on its stack or heap (a bufio buffer, an encoder's state) was not
// erased. Without the experiment the test checks that nothing claims
// secret mode.
func TestIOCallbacksRunInSecretMode(t *testing.T) {
	s := newTest(t)
	h, err := CopyFrom(s, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string) {
		t.Helper()
		if got := secretEnabled(); got != SecretMode() {
			t.Errorf("%s: inside secret.Do = %v, want %v", name, got, SecretMode())
		}
	}
	if _, err := WriteTo(s, h, secretCheckWriter(func(p []byte) (int, error) {
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
}

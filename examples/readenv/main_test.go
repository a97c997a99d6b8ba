package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle"
)

// The tests set the environment, so none of them runs in parallel.

const testVar = "READENV_TEST_SECRET"

func newShuffler(t *testing.T) *memshuffle.Shuffler {
	t.Helper()
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMoveEnv(t *testing.T) {
	const secret = "correct horse battery staple"
	t.Setenv(testVar, secret)
	s := newShuffler(t)

	h, err := moveEnv(s, testVar)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := os.LookupEnv(testVar); ok {
		t.Errorf("$%s still set to %q", testVar, v)
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, testVar+"=") {
			t.Errorf("os.Environ still lists %q", kv)
		}
	}
	err = memshuffle.BorrowViewSlice(s, h, func(b []byte) error {
		if !bytes.Equal(b, []byte(secret)) {
			return fmt.Errorf("the entry holds %q, want %q", b, secret)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Entries != 1 || st.Rented+st.Viewed != 0 {
		t.Errorf("%d entries, %d rented, %d viewed; want 1, 0 and 0", st.Entries, st.Rented, st.Viewed)
	}
}

func TestMoveEnvErrors(t *testing.T) {
	s := newShuffler(t)

	t.Run("not set", func(t *testing.T) {
		t.Setenv(testVar, "")
		os.Unsetenv(testVar)
		if _, err := moveEnv(s, testVar); !errors.Is(err, errNotSet) {
			t.Errorf("moveEnv: %v, want errNotSet", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		t.Setenv(testVar, "")
		if _, err := moveEnv(s, testVar); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("moveEnv: %v, want an error saying it is empty", err)
		}
		if _, ok := os.LookupEnv(testVar); ok {
			t.Errorf("an empty $%s is left set", testVar)
		}
	})
	t.Run("closed shuffler", func(t *testing.T) {
		t.Setenv(testVar, "secret")
		closed := newShuffler(t)
		closed.Close()
		if _, err := moveEnv(closed, testVar); !errors.Is(err, memshuffle.ErrClosed) {
			t.Errorf("moveEnv: %v, want ErrClosed", err)
		}
		if _, ok := os.LookupEnv(testVar); ok {
			t.Errorf("$%s is left set after a failed move", testVar)
		}
	})
	if st := s.Stats(); st.Entries != 0 {
		t.Errorf("failed moves left %d entries", st.Entries)
	}
}

func TestRun(t *testing.T) {
	t.Setenv(testVar, "s3cr3t-value")
	var out bytes.Buffer
	if err := run([]string{"-name", testVar}, &out); err != nil {
		t.Fatal(err)
	}
	want := "moved $" + testVar + " into a Shuffler entry: 12 bytes, encrypted at rest\n$" + testVar + " is set: false\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if strings.Contains(out.String(), "s3cr3t") {
		t.Errorf("the output shows the secret")
	}

	os.Unsetenv(testVar)
	if err := run([]string{"-name", testVar}, &out); !errors.Is(err, errNotSet) {
		t.Errorf("run without the variable: %v, want errNotSet", err)
	}
	if err := run([]string{"-no-such-flag"}, &out); err == nil {
		t.Errorf("run with an unknown flag succeeded")
	}
}

func Example() {
	os.Setenv("DEMO_SECRET", "correct horse battery staple")
	defer os.Unsetenv("DEMO_SECRET")
	if err := run([]string{"-name", "DEMO_SECRET"}, os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// moved $DEMO_SECRET into a Shuffler entry: 28 bytes, encrypted at rest
	// $DEMO_SECRET is set: false
}

// TestRunRefusesArguments: a variable named without -name is an error, not
// ignored. `readenv DB_PASSWORD` moved $SECRET instead, exited 0, and left
// $DB_PASSWORD set for every child process.
func TestRunRefusesArguments(t *testing.T) {
	t.Setenv("SECRET", "the-default-variable")
	t.Setenv(testVar, "s3cr3t-value")
	var out bytes.Buffer
	if err := run([]string{testVar}, &out); err == nil {
		t.Errorf("run with an argument succeeded, printing %q", out.String())
	}
	for _, name := range []string{"SECRET", testVar} {
		if _, ok := os.LookupEnv(name); !ok {
			t.Errorf("$%s was unset", name)
		}
	}
}

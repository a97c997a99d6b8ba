package secretmode

import (
	"errors"
	"testing"
)

// TestDo: Do runs f exactly once, inside secret.Do exactly when On, and
// passes a panic of f through unchanged.
func TestDo(t *testing.T) {
	calls, inside := 0, false
	Do(func() { calls++; inside = Active() })
	if calls != 1 {
		t.Fatalf("f ran %d times", calls)
	}
	if inside != On {
		t.Errorf("inside secret.Do: %v, want %v (On)", inside, On)
	}
	if Active() {
		t.Error("still inside secret.Do after Do returned")
	}
	errBoom := errors.New("boom")
	defer func() {
		if r := recover(); r != errBoom {
			t.Errorf("recovered %v, want the panic of f", r)
		}
	}()
	Do(func() { panic(errBoom) })
}

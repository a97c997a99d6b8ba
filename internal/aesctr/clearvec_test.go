package aesctr

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

// TestClearVectorsLeavesGoState checks that ClearVectors, called between
// the steps of a computation the compiler keeps in vector registers
// (floating point, and GCM's assembly), changes none of its results: the
// registers it clears hold nothing live across a call.
func TestClearVectorsLeavesGoState(t *testing.T) {
	step := func(x float64, i int) float64 { return x*1.0001 + float64(i)/3 }
	want, got := 1.5, 1.5
	for i := range 1000 {
		want = step(want, i)
		ClearVectors()
		got = step(got, i)
	}
	if got != want {
		t.Fatalf("float result %v with ClearVectors between steps, want %v", got, want)
	}

	b, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	nonce, plain := make([]byte, 12), bytes.Repeat([]byte("secret "), 40)
	sealed := g.Seal(nil, nonce, plain, nil)
	ClearVectors()
	again := g.Seal(nil, nonce, plain, nil)
	ClearVectors()
	opened, err := g.Open(nil, nonce, again, nil)
	ClearVectors()
	if err != nil || !bytes.Equal(sealed, again) || !bytes.Equal(opened, plain) {
		t.Fatalf("GCM with ClearVectors between calls: err %v, same seal %v, same plaintext %v", err, bytes.Equal(sealed, again), bytes.Equal(opened, plain))
	}
}

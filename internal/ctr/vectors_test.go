package ctr

import (
	"bytes"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// TestFallbackLeavesNoKeyInVectors: on the crypto/aes fallback, whose
// assembly (arm64's) works on vector registers, New, XOR, XORBulk and Rekey
// return with no round key left in them, where a signal in the code that
// runs next would save it in a frame on the signal stack. Under
// qemu-aarch64, without the clear, New left half the key in V7, XOR of
// 1 KiB and XORBulk (crypto/cipher's CTR) in V8-V9, and Rekey (single
// blocks) in V1-V2. XOR of 32 bytes is not a step here: its XOR and clear
// of the keystream overwrite those registers before it returns, clear or
// not. Runs where aesctr can read the registers (arm64).
func TestFallbackLeavesNoKeyInVectors(t *testing.T) {
	var regs [512]byte
	if !aesctr.VectorsForTest(&regs) {
		t.Skip("the vector registers are read on arm64 only")
	}
	key, salt := new([32]byte), new([8]byte)
	for i := range key {
		key[i] = byte(0xa0 + i)
	}
	salt[0] = 7
	k := *key
	var state [StateSize]byte
	c, err := New(key, salt, &state)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Wipe()
	if c.OffHeap() {
		t.Skip("internal/aesctr runs here, not the crypto/aes fallback")
	}
	var scratch [ScratchSize]byte
	small, big := make([]byte, 32), make([]byte, 1024)
	for _, step := range []struct {
		name string
		run  func()
	}{
		{"New", func() {
			c2, err := New(&k, salt, &state)
			if err != nil {
				t.Fatal(err)
			}
			c2.Wipe()
		}},
		{"XOR of 1 KiB", func() { c.XOR(big, big, 1, &scratch) }},
		{"XORBulk", func() { c.XORBulk(big, big, 1) }},
		{"Rekey", func() { Rekey(small, c, 1, c, 9, &scratch) }},
	} {
		step.run()
		aesctr.VectorsForTest(&regs)
		for _, half := range [][]byte{k[:16], k[16:]} {
			if i := bytes.Index(regs[:], half); i >= 0 {
				t.Errorf("%s: half of the key left in V%d", step.name, i/16)
			}
		}
	}
}

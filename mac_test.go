package memshuffle

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"
	"hash"
	"testing"
)

// TestMACMatchesHMAC compares MAC with crypto/hmac for several hashes and
// for keys and messages of many lengths, keys longer than the block size
// among them.
func TestMACMatchesHMAC(t *testing.T) {
	s := newTest(t)
	hashes := map[string]func() hash.Hash{
		"SHA1": sha1.New, "SHA256": sha256.New, "SHA384": sha512.New384, "SHA512": sha512.New,
		"SHA3-256": func() hash.Hash { return sha3.New256() }, "SHA3-224": func() hash.Hash { return sha3.New224() },
	}
	keyLens := []int{1, 16, 31, 32, 63, 64, 65, 100, 127, 128, 129, 136, 144, 145, 200, 1000}
	msgLens := []int{0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 1000}
	for name, h := range hashes {
		for _, kl := range keyLens {
			key := make([]byte, kl)
			rand.Read(key)
			key[0] |= 1 // a key of zeros is refused (TestBadArgs): a random 1-byte key is one in 256 runs
			kh, err := CopyFrom(s, bytes.Clone(key))
			if err != nil {
				t.Fatal(err)
			}
			for _, ml := range msgLens {
				msg := make([]byte, ml)
				rand.Read(msg)
				m := hmac.New(h, key)
				m.Write(msg)
				want := m.Sum([]byte("prefix"))
				got, err := MAC(s, kh, h, msg, []byte("prefix"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s, key %d bytes, message %d bytes: MAC %x, hmac %x", name, kl, ml, got, want)
				}
			}
			s.Free(kh)
		}
	}
}

// TestMACRFC4231 checks test cases 1 and 6 of RFC 4231 (HMAC-SHA256; case
// 6 has a key longer than the block).
func TestMACRFC4231(t *testing.T) {
	s := newTest(t)
	for _, tc := range []struct{ key, msg, want string }{
		{"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{string(bytes.Repeat([]byte("aa"), 131)),
			"54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
			"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	} {
		kh, _ := CopyFrom(s, unhex(t, tc.key))
		got, err := MAC(s, kh, sha256.New, unhex(t, tc.msg), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, unhex(t, tc.want)) {
			t.Fatalf("got %x, want %s", got, tc.want)
		}
	}
}

func TestMACErrors(t *testing.T) {
	s := newTest(t)
	kh, _ := CopyFrom(s, []byte("key"))
	if _, err := MAC(s, kh, nil, nil, nil); !errors.Is(err, ErrNilArgument) {
		t.Errorf("nil hash: %v", err)
	}
	if _, err := MAC(s, kh, func() hash.Hash { return nil }, nil, nil); !errors.Is(err, ErrNilArgument) {
		t.Errorf("hash function returning nil: %v", err)
	}
	if _, err := MAC(s, Handle{}, sha256.New, nil, nil); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("zero handle: %v", err)
	}
	dst := []byte("kept")
	if got, err := MAC(s, Handle{}, sha256.New, nil, dst); err == nil || !bytes.Equal(got, dst) {
		t.Errorf("on error MAC returned %q, %v; want dst unchanged", got, err)
	}
}

// TestMACAllocs bounds what a MAC allocates: the two hashes and the pad.
func TestMACAllocs(t *testing.T) {
	if SecretMode() {
		t.Skip("secret mode adds allocations of its own")
	}
	s := newTest(t)
	kh, _ := CopyFrom(s, bytes.Repeat([]byte{0x42}, 32)) // not zeros: refused as a key nobody filled
	msg, dst := make([]byte, 64), make([]byte, 0, 32)
	n := testing.AllocsPerRun(100, func() { MAC(s, kh, sha256.New, msg, dst[:0]) })
	if n > 3 {
		t.Errorf("%v allocations per MAC, want at most 3", n)
	}
}

// sumElsewhere is a hash whose Sum returns the sum in an array of its own
// rather than in b's spare room, as append may, keeping each array it
// made; with long, it returns SHA-512's 64 bytes under a Size and a
// BlockSize of 32, and with short only the first half of its sum.
type sumElsewhere struct {
	hash.Hash
	long, short bool
	made        *[][]byte
}

func (h sumElsewhere) Size() int {
	if h.long {
		return 32
	}
	return h.Hash.Size()
}

func (h sumElsewhere) BlockSize() int {
	if h.long {
		return 32
	}
	return h.Hash.BlockSize()
}

func (h sumElsewhere) Sum(b []byte) []byte {
	sum := h.Hash.Sum(nil)
	if h.short {
		sum = sum[:len(sum)/2]
	}
	out := append(b[:len(b):len(b)], sum...)
	*h.made = append(*h.made, out[len(b):])
	return out
}

// TestMACHashSumElsewhere: a hash of the caller's may return its sum
// anywhere, of any length. MAC used to take it from its own pad, where
// the standard hashes put it, and so MAC'd every key longer than a block
// as the empty key, and left the hashed key on the heap. It now equals
// crypto/hmac with such hashes too, for every key length, and wipes every
// sum the hashes returned outside its pad.
func TestMACHashSumElsewhere(t *testing.T) {
	s := newTest(t)
	for _, c := range []struct {
		name        string
		base        func() hash.Hash
		long, short bool
	}{
		{"SHA256", sha256.New, false, false},
		{"SHA512 as 32 bytes", sha512.New, true, false},
		{"SHA256 half sum", sha256.New, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var made [][]byte
			h := func() hash.Hash { return sumElsewhere{c.base(), c.long, c.short, &made} }
			seen := map[string]bool{}
			for _, kl := range []int{1, 31, 32, 33, 64, 65, 100, 129, 200} {
				key := bytes.Repeat([]byte{byte(kl)}, kl)
				kh, err := CopyFrom(s, bytes.Clone(key))
				if err != nil {
					t.Fatal(err)
				}
				msg := []byte("message")
				m := hmac.New(h, key)
				m.Write(msg)
				want := m.Sum(nil)
				made = nil
				got, err := MAC(s, kh, h, msg, nil)
				if err != nil {
					t.Fatalf("key of %d bytes: %v", kl, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("key of %d bytes: MAC %x, crypto/hmac %x", kl, got, want)
				}
				if seen[string(got)] {
					t.Errorf("key of %d bytes: the MAC of another key", kl)
				}
				seen[string(got)] = true
				if len(made) == 0 {
					t.Fatal("the hash made no sum")
				}
				for i, sum := range made[:len(made)-1] { // the last is the MAC itself
					if !bytes.Equal(sum, make([]byte, len(sum))) {
						t.Errorf("key of %d bytes: sum %d of %d left as it was: %x", kl, i+1, len(made), sum)
					}
				}
				s.Free(kh)
			}
		})
	}
}

// sumAtOffset is a hash whose Sum appends a byte before its sum and
// returns the sum alone: in b's array, one byte past where b ends.
type sumAtOffset struct{ hash.Hash }

func (h sumAtOffset) Sum(b []byte) []byte {
	n := len(b)
	return h.Hash.Sum(append(b, 0xaa))[n+1:]
}

// TestMACHashSumAtOffset: a sum returned in MAC's pad, but not at its
// start, is the key as it is for crypto/hmac. MAC took the pad from its
// start, the byte before the sum included.
func TestMACHashSumAtOffset(t *testing.T) {
	macMatchesHMAC(t, func() hash.Hash { return sumAtOffset{sha256.New()} })
}

// macMatchesHMAC compares MAC with crypto/hmac, with the hashes h makes,
// for keys of a block's size, longer and shorter.
func macMatchesHMAC(t *testing.T, h func() hash.Hash) {
	t.Helper()
	s := newTest(t)
	for _, kl := range []int{32, 64, 65, 100} {
		key := bytes.Repeat([]byte{byte(kl)}, kl)
		kh, err := CopyFrom(s, bytes.Clone(key))
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(h, key)
		m.Write([]byte("message"))
		want := m.Sum(nil)
		got, err := MAC(s, kh, h, []byte("message"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("key of %d bytes: MAC %x, crypto/hmac %x", kl, got, want)
		}
		s.Free(kh)
	}
}

// sumTruncated is a hash truncated to n bytes the common way: its Sum
// appends the whole sum to b and returns the first n bytes of it.
type sumTruncated struct {
	hash.Hash
	n int
}

func (h sumTruncated) Size() int { return h.n }

func (h sumTruncated) Sum(b []byte) []byte { return h.Hash.Sum(b)[:len(b)+h.n] }

// TestMACTruncatedHash: the hash of a key longer than a block, by a hash
// whose Sum returns less than it wrote in MAC's pad, is the key as far as
// the returned bytes go, and zeros after, as for crypto/hmac. The bytes
// past them were left in the pad and made part of the key.
func TestMACTruncatedHash(t *testing.T) {
	macMatchesHMAC(t, func() hash.Hash { return sumTruncated{sha256.New(), 16} })
}

package ctr

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

// The shapes of crypto/aes's Block on s390x and of what is made from it:
// the key in a slice of an array inside the Block (CPACF), the schedule
// behind a pointer (without CPACF), and a GCM holding a copy of the Block,
// slice and pointer included. On other machines the schedule is an array
// inside the Block, and these shapes are how the wipe is tested there.
type (
	scheduleShape struct {
		rounds int
		enc    [60]uint32
	}
	blockShape struct {
		function int
		key      []byte
		storage  [32]byte
		fallback *scheduleShape
	}
	gcmShape struct {
		cipher  blockShape
		hashKey [16]byte
		// Not key material, and not the GCM's alone: left as it is.
		parent *blockShape
		any    any
	}
)

// cpacfBlock is a Block as crypto/aes builds it on s390x with CPACF.
func cpacfBlock() *blockShape {
	b := &blockShape{function: 20}
	b.key = b.storage[:]
	copy(b.storage[:], bytes.Repeat([]byte{0xa5}, 32))
	return b
}

// genericBlock is a Block as crypto/aes builds it on s390x without CPACF.
func genericBlock() *blockShape {
	s := &scheduleShape{rounds: 14}
	for i := range s.enc {
		s.enc[i] = 0xa5a5a5a5
	}
	return &blockShape{fallback: s}
}

func isZero(b []byte) bool { return bytes.Equal(b, make([]byte, len(b))) }

// TestWipeObjectFollowsReferences: the wipe of a GCM reaches the key its
// Block's slice refers to and the schedule behind its pointer, not only
// the object (which held neither); memory with pointers of its own, and
// what an interface holds, it leaves alone.
func TestWipeObjectFollowsReferences(t *testing.T) {
	for _, c := range []struct {
		name string
		b    *blockShape
		key  func(b *blockShape) []byte
	}{
		{"cpacf", cpacfBlock(), func(b *blockShape) []byte { return b.storage[:] }},
		{"generic", genericBlock(), func(b *blockShape) []byte { return bytes.Clone(objectBytes(b.fallback)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			other := &[4]byte{1, 2, 3, 4}
			parent := cpacfBlock()
			g := &gcmShape{cipher: *c.b, hashKey: [16]byte{1}, parent: parent, any: other}
			sched := c.b.fallback
			WipeObject(g)
			if !isZero(objectBytes(g)) {
				t.Error("the object is not zeroed")
			}
			if !isZero(c.b.storage[:]) {
				t.Error("the key the copied slice refers to is left")
			}
			if sched != nil && !isZero(objectBytes(sched)) {
				t.Error("the schedule behind the pointer is left")
			}
			if isZero(parent.storage[:]) || *other != [4]byte{1, 2, 3, 4} {
				t.Error("memory with pointers, or behind an interface, was zeroed")
			}
		})
	}
}

// TestWipeSpent: the wipe of a Block a GCM was made from leaves what the
// GCM still uses (its key in the Block's array, a shared schedule) for
// the GCM's wipe, and wipes the rest; a GCM with a copy of its own (the
// layout of other machines) leaves nothing of the Block to keep.
func TestWipeSpent(t *testing.T) {
	b := cpacfBlock()
	g := &gcmShape{cipher: *b}
	WipeSpent(b, g)
	if isZero(g.cipher.key) || isZero(b.storage[:]) {
		t.Fatal("cpacf: the GCM's key was wiped with its Block")
	}
	WipeObject(g)
	if !isZero(b.storage[:]) {
		t.Fatal("cpacf: the GCM's wipe left the key")
	}

	b = genericBlock()
	sched := b.fallback
	g = &gcmShape{cipher: *b}
	WipeSpent(b, g)
	if isZero(objectBytes(sched)) || g.cipher.fallback != sched {
		t.Fatal("generic: the shared schedule was wiped with the Block")
	}
	if !isZero(objectBytes(b)) {
		t.Fatal("generic: the Block's object, which the GCM does not use, is left")
	}
	WipeObject(g)
	if !isZero(objectBytes(sched)) {
		t.Fatal("generic: the GCM's wipe left the schedule")
	}

	// A GCM crypto/cipher builds around another Block holds it in an
	// interface, and a wrapper may stand between (BoringCrypto's for a
	// key of an odd size): the Block is the GCM's, whole.
	type wrapper struct{ b *blockShape }
	b = cpacfBlock()
	WipeSpent(b, &struct{ a any }{&wrapper{b}})
	if b.key == nil || isZero(b.storage[:]) {
		t.Fatal("wrapped: the Block the GCM holds was wiped")
	}

	type copied struct{ enc [60]uint32 }
	b = genericBlock()
	sched = b.fallback
	WipeSpent(b, &copied{enc: sched.enc})
	if !isZero(objectBytes(sched)) || !isZero(objectBytes(b)) {
		t.Fatal("copy: the Block's schedule, which nothing else uses, is left")
	}
}

// TestWipeSpentRealGCM: after WipeSpent of its Block, crypto/cipher's GCM
// still seals as a GCM of the key does, on this machine's layout; its
// wipe leaves none of what Reach found.
func TestWipeSpentRealGCM(t *testing.T) {
	key := bytes.Repeat([]byte{0x3c}, 32)
	ref, _ := aes.NewCipher(key)
	refGCM, _ := cipher.NewGCM(ref)
	want := refGCM.Seal(nil, make([]byte, 12), []byte("plaintext"), nil)

	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	WipeSpent(b, g)
	if got := g.Seal(nil, make([]byte, 12), []byte("plaintext"), nil); !bytes.Equal(got, want) {
		t.Fatalf("after WipeSpent of its Block the GCM seals %x, want %x", got, want)
	}
	mem := Reach(g)
	WipeObject(g)
	for _, m := range mem {
		if !isZero(m) {
			t.Fatal("WipeObject left memory Reach found")
		}
	}
}

// TestWipeObjectNoAllocs: WipeObject and WipeSpent run pinned, where an
// allocation could wait on a lock.
func TestWipeObjectNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b, _ := aes.NewCipher(make([]byte, 32))
	g, _ := cipher.NewGCM(b)
	shape := &gcmShape{cipher: *cpacfBlock(), any: &[4]byte{}}
	shape.cipher.fallback = genericBlock().fallback
	spent := cpacfBlock()
	user := &gcmShape{cipher: *spent, parent: cpacfBlock(), any: &struct{ p *blockShape }{spent}}
	if n := testing.AllocsPerRun(100, func() {
		WipeSpent(b, g)
		WipeObject(g)
		WipeObject(b)
		WipeObject(shape)
		WipeSpent(spent, user)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestWipeObjectLeavesOthers: a wipe follows the pointers and slices of
// the object it clears, and must stop at what the object owns: a shared
// table zeroed (a generic AES's, a GCM's) would change what every other
// cipher of the process computes, with no error. Each object the library
// wipes, made from the standard library's and x/crypto's constructors,
// is wiped, and a cipher made before it and one made after it must still
// give what they gave before.
func TestWipeObjectLeavesOthers(t *testing.T) {
	key := bytes.Repeat([]byte{0x5c}, 32)
	nonce := make([]byte, 12)
	plain := bytes.Repeat([]byte("a known plaintext"), 4)
	sealer := func() cipher.AEAD {
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	blockOut := func(b cipher.Block) []byte {
		out := make([]byte, aes.BlockSize)
		b.Encrypt(out, plain[:aes.BlockSize])
		return out
	}
	kept := sealer()
	keptBlock, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	wantSeal := kept.Seal(nil, nonce, plain, nil)
	wantBlock := blockOut(keptBlock)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, victim := range []any{sealer(), b} {
		WipeObject(victim)
		if got := kept.Seal(nil, nonce, plain, nil); !bytes.Equal(got, wantSeal) {
			t.Fatalf("after a wipe of a %T, another GCM seals %x, want %x", victim, got, wantSeal)
		}
		if got := sealer().Seal(nil, nonce, plain, nil); !bytes.Equal(got, wantSeal) {
			t.Fatalf("after a wipe of a %T, a new GCM seals %x, want %x", victim, got, wantSeal)
		}
		if got := blockOut(keptBlock); !bytes.Equal(got, wantBlock) {
			t.Fatalf("after a wipe of a %T, another Block encrypts %x, want %x", victim, got, wantBlock)
		}
	}
}

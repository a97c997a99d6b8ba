package memshuffle_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log"

	"github.com/memshuffle/memshuffle"
)

func ExampleMAC() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	key, err := memshuffle.CopyFrom(s, []byte("key")) // wipes the []byte
	if err != nil {
		log.Fatal(err)
	}
	msg := []byte("The quick brown fox jumps over the lazy dog")
	mac, err := memshuffle.MAC(s, key, sha256.New, msg, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%x\n", mac)

	// Check a MAC someone presents in constant time.
	presented, _ := hex.DecodeString("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
	fmt.Println(hmac.Equal(presented, mac))
	// Output:
	// f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8
	// true
}

func ExampleNewSigner() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// A key file, as openssl genpkey -algorithm ed25519 writes one (the
	// seed of RFC 8032, section 7.1, test 1).
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	der, _ := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	file := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	// Two calls from the file to a crypto.Signer.
	h, err := memshuffle.ReadPrivateKey(s, bytes.NewReader(file))
	if err != nil {
		log.Fatal(err)
	}
	signer, err := memshuffle.NewSigner(s, h)
	if err != nil {
		log.Fatal(err)
	}
	pub := signer.Public().(ed25519.PublicKey)
	sig, err := signer.Sign(nil, []byte{}, crypto.Hash(0))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("public key %x\n", pub)
	fmt.Printf("signature  %x...\n", sig[:16])
	fmt.Println("verifies:", ed25519.Verify(pub, []byte{}, sig))
	// Output:
	// public key d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
	// signature  e5564300c360ac729086e2cc806e828a...
	// verifies: true
}

func ExampleNewAEAD() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	key, err := memshuffle.Alloc[byte](s, 32) // AES-256
	if err != nil {
		log.Fatal(err)
	}
	// Generate the key in place.
	if err := memshuffle.BorrowSlice(s, key, func(k []byte) error { _, err := rand.Read(k); return err }); err != nil {
		log.Fatal(err)
	}
	aead, err := memshuffle.NewAEAD(s, key)
	if err != nil {
		log.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize()) // never twice under one key
	sealed, err := aead.Seal(nil, nonce, []byte("attack at dawn"), []byte("header"))
	if err != nil {
		log.Fatal(err)
	}
	opened, err := aead.Open(nil, nonce, sealed, []byte("header"))
	fmt.Printf("%d bytes sealed; opened %q, %v\n", len(sealed), opened, err)
	sealed[0] ^= 1
	_, err = aead.Open(nil, nonce, sealed, []byte("header"))
	fmt.Println(errors.Is(err, memshuffle.ErrAuthFailed))
	// Output:
	// 30 bytes sealed; opened "attack at dawn", <nil>
	// true
}

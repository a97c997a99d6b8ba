package memshuffle

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// pemSeeds are key files and damaged ones, around what decodePEM must
// tell apart.
var pemSeeds = []string{
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKm0\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKm0!\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKm=\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4C=AQAw\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n",
	"-----BEGIN PRIVATE KEY-----\r\nMC4CAQAw\r\n-----END PRIVATE KEY-----\r\n",
	"text\n-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\nMC4C AQAw\n-----END EC PRIVATE KEY-----\n",
	"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAQ==\n-----END RSA PRIVATE KEY-----\n",
	"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAQ:=\n-----END RSA PRIVATE KEY-----\n",
	"say -----BEGIN X----- in a line\n-----BEGIN X-----\nAAAA\n-----END X-----\n",
	"-----BEGIN A-----\n-----BEGIN B-----\nAAAA\n-----END B-----\n-----END A-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKm0-----END PRIVATE KEY-----\n",
	`-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKm0\n-----END PRIVATE KEY-----\n`,
	"\n-----END -----BEGIN PRIVATE KEY-----\nMC4C!AQAw\n-----END PRIVATE KEY-----\n",
	"-----BEGIN X-----b-----\n-----END X-----c-----\n-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4C AQAw-----AQAw-----\n-----END PRIVATE KEY-----\n",
	"-----BEGIN X-----\nA: b\n-----END X-----\n",
	"-----BEGIN X-----\n-----END X-----\n",
	"-----BEGIN X-----\nAA\tAA \nAAAA\n-----END Y-----\n",
	// A colon makes the END line a header, as encoding/pem reads it.
	"-----BEGIN A:B-----\n-----END A:B-----",
}

// TestDecodePEM: what decodePEM makes of the seeds: the blocks of a key
// file, and errDamagedPEM for any block that does not decode.
func TestDecodePEM(t *testing.T) {
	for _, tc := range []struct {
		in    string
		types []string // nil: errDamagedPEM
	}{
		{pemSeeds[0], []string{"PRIVATE KEY"}},
		{pemSeeds[1], nil},
		{pemSeeds[3], nil},
		{pemSeeds[4], nil},
		{pemSeeds[5], []string{"PRIVATE KEY"}},
		{pemSeeds[6], []string{"EC PARAMETERS", "EC PRIVATE KEY"}},
		{pemSeeds[9], []string{"X"}},
		{pemSeeds[10], nil},
		{pemSeeds[11], nil},
		{pemSeeds[12], []string{}},
		{pemSeeds[13], []string{}}, // no BEGIN at a line's start
		{pemSeeds[16], nil},
		{pemSeeds[14], nil},
		{pemSeeds[15], nil},
		{pemSeeds[18], nil},
		{pemSeeds[19], nil},
	} {
		blocks, err := decodePEM([]byte(tc.in))
		if tc.types == nil {
			if !errors.Is(err, errDamagedPEM) {
				t.Errorf("%q: %v, want errDamagedPEM", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var got []string
		for _, b := range blocks {
			got = append(got, string(b.typ))
		}
		if len(got) != len(tc.types) || (len(got) > 0 && !equalStrings(got, tc.types)) {
			t.Errorf("%q: blocks %q, want %q", tc.in, got, tc.types)
		}
	}
	blocks, err := decodePEM([]byte(pemSeeds[7]))
	if err != nil || len(blocks) != 1 || !blocks[0].encrypted {
		t.Errorf("a DEK-Info header: %v, %+v; want one encrypted block", err, blocks)
	}
}

func equalStrings(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecodePEM holds decodePEM to encoding/pem: every block it decodes,
// encoding/pem decodes too, in the same order, to the same type, bytes and
// encryption header. encoding/pem may find more, begun in the middle of a
// line after an END marker, which decodePEM does not take for blocks.
func FuzzDecodePEM(f *testing.F) {
	for _, in := range pemSeeds {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		blocks, err := decodePEM(in)
		if err != nil {
			return
		}
		k := 0
		for rest := in; k < len(blocks); {
			var p *pem.Block
			if p, rest = pem.Decode(rest); p == nil {
				break
			}
			_, enc := p.Headers["DEK-Info"]
			if b := blocks[k]; p.Type == string(b.typ) && bytes.Equal(p.Bytes, b.der) && enc == b.encrypted {
				k++
			}
		}
		if k != len(blocks) {
			t.Fatalf("%q: encoding/pem decodes %d of decodePEM's %d blocks", in, k, len(blocks))
		}
	})
}

// FuzzDecodePEMRoundTrip holds decodePEM to encoding/pem from the other
// side: a block encoding/pem writes, and reads back as written, decodePEM
// reads the same, with the same type, bytes and encryption header. Where
// FuzzDecodePEM checks only what decodePEM accepts, this fails a decodePEM
// that refuses a well-formed block.
func FuzzDecodePEMRoundTrip(f *testing.F) {
	f.Add("PRIVATE KEY", "", "", []byte{1, 2, 3})
	f.Add("RSA PRIVATE KEY", "DEK-Info", "AES-128-CBC,00", bytes.Repeat([]byte{0xa5}, 100))
	f.Add("EC PARAMETERS", "Proc-Type", "4,ENCRYPTED", []byte{})
	f.Add("A:B", "k", "v", []byte("x"))
	f.Fuzz(func(t *testing.T, typ, key, value string, data []byte) {
		b := &pem.Block{Type: typ, Bytes: data}
		if key != "" {
			b.Headers = map[string]string{key: value}
		}
		enc := pem.EncodeToMemory(b)
		if enc == nil {
			return // a header encoding/pem will not write
		}
		ref, rest := pem.Decode(enc)
		if ref == nil || len(rest) != 0 || ref.Type != typ || !bytes.Equal(ref.Bytes, data) {
			return // written, but not read back as written
		}
		_, refEnc := ref.Headers["DEK-Info"]
		blocks, err := decodePEM(enc)
		if err != nil || len(blocks) != 1 {
			t.Fatalf("%q: %d blocks, %v; encoding/pem reads it back", enc, len(blocks), err)
		}
		if got := blocks[0]; string(got.typ) != typ || !bytes.Equal(got.der, data) || got.encrypted != refEnc {
			t.Fatalf("%q: type %q, %x, encrypted %v; want %q, %x, %v", enc, got.typ, got.der, got.encrypted, typ, data, refEnc)
		}
	})
}

// TestReadPrivateKeyLimit: input of 64 KiB or more fails, input below it
// is read, however the reader delivers io.EOF: on its own after the last
// bytes, or with them (iotest.DataErrReader). With them, a key file of
// exactly 64 KiB used to be accepted, and refused otherwise.
func TestReadPrivateKeyLimit(t *testing.T) {
	s := newTest(t)
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	block := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(t, priv)})
	readers := map[string]func([]byte) io.Reader{
		"EOF after":      func(b []byte) io.Reader { return bytes.NewReader(b) },
		"EOF with bytes": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		"one byte":       func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
	}
	for _, size := range []int{maxKeyFile - 1, maxKeyFile, maxKeyFile + 1} {
		// Text before the block is skipped: comment lines up to size.
		in := append(bytes.Repeat([]byte("#"), size-len(block)-1), '\n')
		in = append(in, block...)
		for name, reader := range readers {
			h, err := ReadPrivateKey(s, reader(bytes.Clone(in)))
			switch {
			case size < maxKeyFile && err != nil:
				t.Errorf("%d bytes, %s: %v", size, name, err)
			case size >= maxKeyFile && !errors.Is(err, ErrInvalidKey):
				t.Errorf("%d bytes, %s: %v, want ErrInvalidKey", size, name, err)
			}
			if err == nil {
				s.Free(h)
			}
		}
	}
}

// TestReadPrivateKeyDERHoldingMarker: a key in DER whose bytes hold the PEM
// marker (here an Ed25519 seed that begins with it) is read as DER, as
// NewSigner takes it. It used to be taken for PEM, and refused.
func TestReadPrivateKeyDERHoldingMarker(t *testing.T) {
	s := newTest(t)
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "-----BEGIN")
	for i := 10; i < len(seed); i++ {
		seed[i] = byte(i * 7)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	h, err := ReadPrivateKey(s, bytes.NewReader(pkcs8(t, priv)))
	if err != nil {
		t.Fatalf("ReadPrivateKey: %v", err)
	}
	signer, err := NewSigner(s, h)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("message")
	sig, err := signer.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sig, ed25519.Sign(priv, msg)) {
		t.Error("the key read is not the key written")
	}
}

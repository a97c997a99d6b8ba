package memshuffle

import (
	"bytes"
	"encoding/pem"
	"errors"
	"testing"
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

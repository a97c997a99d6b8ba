package memscan

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// naiveMatches returns the offsets of every occurrence of pat in data,
// overlapping ones included, the way repeated bytes.Index finds them.
func naiveMatches(data, pat []byte) []int {
	var offs []int
	for i := 0; i+len(pat) <= len(data); {
		j := bytes.Index(data[i:], pat)
		if j < 0 {
			break
		}
		offs = append(offs, i+j)
		i += j + 1
	}
	return offs
}

func allMatches(p *Pattern, data []byte) []int {
	var offs []int
	p.matches(data, func(off int) { offs = append(offs, off) })
	return offs
}

func mustPattern(t testing.TB, b []byte) *Pattern {
	t.Helper()
	p, err := NewPattern(b)
	if err != nil {
		t.Fatalf("NewPattern(%d bytes): %v", len(b), err)
	}
	return p
}

func TestNewPatternErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    []byte
		want error
	}{
		{"nil", nil, ErrEmptyPattern},
		{"empty", []byte{}, ErrEmptyPattern},
		{"too long", make([]byte, MaxPatternLen+1), ErrPatternTooLong},
		{"one byte", []byte{0}, nil},
		{"longest", make([]byte, MaxPatternLen), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPattern(tt.p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewPattern: err = %v, want %v", err, tt.want)
			}
			if err == nil && p.Len() != len(tt.p) {
				t.Fatalf("Len() = %d, want %d", p.Len(), len(tt.p))
			}
		})
	}
}

// TestPatternStorageNeverPlaintext checks the masking rule byte by byte:
// neither stored array agrees with the plaintext anywhere, so neither can
// contain it, and NewPattern did not keep the caller's slice.
func TestPatternStorageNeverPlaintext(t *testing.T) {
	t.Parallel()
	inputs := [][]byte{
		{0},
		{0xff},
		bytes.Repeat([]byte{0}, 300),
		bytes.Repeat([]byte{0xaa}, 300),
		[]byte("correct horse battery staple"),
	}
	for i := range 20 {
		b := make([]byte, 1+i*7)
		rand.Read(b)
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		orig := slices.Clone(in)
		p := mustPattern(t, in)
		for i, c := range orig {
			if p.masked[i] == c || p.mask[i] == c || p.mask[i] == 0 {
				t.Fatalf("len %d: byte %d stored in the clear (mask %#x, masked %#x)", len(in), i, p.mask[i], p.masked[i])
			}
		}
		// The caller wipes its slice; the Pattern must not depend on it.
		clear(in)
		data := append(slices.Clone(orig), orig...)
		if got, want := allMatches(p, data), naiveMatches(data, orig); !slices.Equal(got, want) {
			t.Fatalf("len %d: matches %v, want %v", len(in), got, want)
		}
	}
}

func TestNilPattern(t *testing.T) {
	t.Parallel()
	var p *Pattern
	if p.Len() != 0 {
		t.Fatalf("nil Len() = %d", p.Len())
	}
	if _, err := ScanCore("does-not-matter", p); !errors.Is(err, ErrEmptyPattern) {
		t.Fatalf("ScanCore(nil pattern): %v, want ErrEmptyPattern", err)
	}
	if _, err := ScanCore("does-not-matter", &Pattern{}); !errors.Is(err, ErrEmptyPattern) {
		t.Fatalf("ScanCore(zero pattern): %v, want ErrEmptyPattern", err)
	}
}

func TestMatchesTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		data, pat string
		want      []int
	}{
		{"", "a", nil},
		{"a", "a", []int{0}},
		{"a", "ab", nil},
		{"aaaa", "aa", []int{0, 1, 2}},
		{"abcabcab", "abcab", []int{0, 3}},
		{"xxsecretxx", "secret", []int{2}},
		{"secret", "secret", []int{0}},
		{"xsecre", "secret", nil},
		{"\x00\x00\x00", "\x00", []int{0, 1, 2}},
		{strings.Repeat("ab", 100), "ba", nil}, // nil: ask naiveMatches
	}
	for _, tt := range tests {
		want := tt.want
		if want == nil {
			want = naiveMatches([]byte(tt.data), []byte(tt.pat))
		}
		got := allMatches(mustPattern(t, []byte(tt.pat)), []byte(tt.data))
		if !slices.Equal(got, want) {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.data, tt.pat, got, want)
		}
	}
}

// TestMatchesLongPeriodic covers patterns longer than the 64-bit rotation of
// the rolling hash, where bytes 64 apart cancel out of the hash: collisions
// get common, and only the masked comparison keeps the answer right.
func TestMatchesLongPeriodic(t *testing.T) {
	t.Parallel()
	for _, n := range []int{63, 64, 65, 128, 129, 1019} {
		pat := bytes.Repeat([]byte{0}, n)
		pat[n-1] = 1
		data := make([]byte, 8192)
		for _, at := range []int{0, 100, 8192 - n} {
			copy(data[at:], pat)
		}
		got := allMatches(mustPattern(t, pat), data)
		if want := naiveMatches(data, pat); !slices.Equal(got, want) {
			t.Errorf("n=%d: matches %v, want %v", n, got, want)
		}
	}
}

func TestMatchesRandomized(t *testing.T) {
	t.Parallel()
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 2000 {
		// A small alphabet makes overlapping matches common.
		alpha := 1 + r.IntN(4)
		data := make([]byte, r.IntN(300))
		for i := range data {
			data[i] = byte(r.IntN(alpha))
		}
		pat := make([]byte, 1+r.IntN(8))
		for i := range pat {
			pat[i] = byte(r.IntN(alpha))
		}
		got := allMatches(mustPattern(t, pat), data)
		if want := naiveMatches(data, pat); !slices.Equal(got, want) {
			t.Fatalf("matches(%x, %x) = %v, want %v", data, pat, got, want)
		}
	}
}

// FuzzMatch checks the matcher against bytes.Index, both on a whole buffer
// and streamed through the chunk scanner with a buffer just big enough for
// the overlap, so every chunk boundary the fuzzer invents is crossed.
func FuzzMatch(f *testing.F) {
	f.Add([]byte("the secret is secretsecret"), []byte("secret"), uint8(0))
	f.Add([]byte("aaaaaaaaaa"), []byte("aaa"), uint8(1))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 1}, []byte{0, 1}, uint8(3))
	f.Add(bytes.Repeat([]byte("ab"), 70), bytes.Repeat([]byte("ab"), 33), uint8(7))
	f.Fuzz(func(t *testing.T, data, pat []byte, extra uint8) {
		if len(pat) == 0 || len(pat) > MaxPatternLen {
			if _, err := NewPattern(pat); err == nil {
				t.Fatalf("NewPattern accepted %d bytes", len(pat))
			}
			return
		}
		p, err := NewPattern(pat)
		if err != nil {
			t.Fatal(err)
		}
		want := naiveMatches(data, pat)
		if got := allMatches(p, data); !slices.Equal(got, want) {
			t.Fatalf("matches = %v, want %v", got, want)
		}
		// Each chunk brings step new bytes behind len(pat)-1 old ones, all
		// rehashed: small steps cross many boundaries, but the cost grows
		// as len(data)/step*len(pat), so large inputs get larger steps.
		step := 1 + int(extra%16)
		if work := len(data) / step * len(pat); work > 1<<22 {
			step = len(data)*len(pat)>>22 + 1
		}
		bufSize := len(pat) - 1 + step
		if got := streamMatches(t, p, data, 0x1000, bufSize); !slices.Equal(got, want) {
			t.Fatalf("streamed with a %d-byte buffer: %v, want %v", bufSize, got, want)
		}
	})
}

// TestFuzzCorpusPresent fails when a committed seed corpus goes missing, so
// FuzzMatch, FuzzMatchAll and FuzzOpenCore never silently run on nothing
// but their f.Add seeds (FuzzOpenCore has none).
func TestFuzzCorpusPresent(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"FuzzMatch", "FuzzMatchAll", "FuzzOpenCore"} {
		dir := filepath.Join("testdata", "fuzz", target)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) < 3 {
			t.Fatalf("%s corpus has %d files, want at least 3", target, len(ents))
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
				t.Errorf("%s/%s: not a go test fuzz v1 file", target, e.Name())
			}
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type stallReader struct{}

func (stallReader) Read([]byte) (int, error) { return 0, nil }

// maskedReader yields the XOR of two equal-length byte strings, writing
// each plaintext byte straight into the caller's buffer: the plaintext
// exists nowhere else.
type maskedReader struct{ a, b []byte }

func (r *maskedReader) Read(p []byte) (int, error) {
	if len(r.a) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.a), 3) // short reads on purpose
	for i := range n {
		p[i] = r.a[i] ^ r.b[i]
	}
	r.a, r.b = r.a[n:], r.b[n:]
	return n, nil
}

func TestReadPattern(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name    string
		r       io.Reader
		wantLen int
		wantErr error
	}{
		{"bytes", strings.NewReader("secret"), 6, nil},
		{"masked", &maskedReader{a: []byte{1, 2, 3, 4, 5}, b: []byte{9, 9, 9, 9, 9}}, 5, nil},
		{"longest", bytes.NewReader(make([]byte, MaxPatternLen)), MaxPatternLen, nil},
		{"empty", strings.NewReader(""), 0, ErrEmptyPattern},
		{"too long", bytes.NewReader(make([]byte, MaxPatternLen+1)), 0, ErrPatternTooLong},
		{"far too long", bytes.NewReader(make([]byte, 3*MaxPatternLen)), 0, ErrPatternTooLong},
		{"read error", errReader{boom}, 0, boom},
		{"no progress", stallReader{}, 0, io.ErrNoProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ReadPattern(tt.r)
			if errors.Is(err, ErrUnsupported) {
				t.Skip(err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadPattern: err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && p.Len() != tt.wantLen {
				t.Fatalf("Len() = %d, want %d", p.Len(), tt.wantLen)
			}
		})
	}
	p, err := ReadPattern(&maskedReader{a: []byte("SECRET"), b: bytes.Repeat([]byte{0x20}, 6)})
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := allMatches(p, []byte("a secret, secret")); !slices.Equal(got, []int{2, 10}) {
		t.Fatalf("ReadPattern's pattern matches at %v, want [2 10]", got)
	}
}

// BenchmarkMatch reports the matcher's throughput over 1 MiB of random
// bytes, next to bytes.Index over the same bytes as a baseline (which needs
// the plaintext, so it is no option for the scanner).
func BenchmarkMatch(b *testing.B) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	for _, n := range []int{4, 16, 64, 1019} {
		pat := make([]byte, n)
		rand.Read(pat)
		p := mustPattern(b, pat)
		b.Run(fmt.Sprintf("impl=masked/len=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			hits := 0
			for b.Loop() {
				p.matches(data, func(int) { hits++ })
			}
		})
		b.Run(fmt.Sprintf("impl=bytes.Index/len=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			hits := 0
			for b.Loop() {
				hits += len(naiveMatches(data, pat))
			}
		})
	}
}

package memshuffle

import (
	"strings"
	"testing"
)

// pemSeeds are inputs around what pemDecodes must tell apart.
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
	"-----BEGIN X\n-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nMC4C---AQAw\n-----END PRIVATE KEY-----\n",
	"-----BEGIN PRIVATE KEY-----\nProc-Type: MC4CAQAw\n\nAQ==\n-----END PRIVATE KEY-----\n",
}

// TestPEMDecodesPredicts: pemDecodes, which decodes only a shadow of the
// input with its base64 letters blanked, says what decoding the input
// itself would (pemAllDecode of the input): whether every PEM block begun
// decodes.
func TestPEMDecodesPredicts(t *testing.T) {
	for _, in := range pemSeeds {
		if got, want := pemDecodes([]byte(in)), pemAllDecode([]byte(in)); got != want {
			t.Errorf("%q: pemDecodes %v, decoding says %v", in, got, want)
		}
	}
}

// TestBlankBase64KeepsOnlyMarkers: of a damaged key, wherever its base64
// stands (run into the END marker, on one line with escaped newlines, in
// a header), the shadow keeps no letter but the markers' and 'A's.
func TestBlankBase64KeepsOnlyMarkers(t *testing.T) {
	const body = "MC4CAQAwBQYDK2VwBCIEIKm0zz9+/"
	for _, tc := range []struct{ in, want string }{
		{"-----BEGIN PRIVATE KEY-----\n" + body + "-----END PRIVATE KEY-----\n",
			"-----BEGIN PRIVATE KEY-----\n" + strings.Repeat("A", len(body)) + "-----END PRIVATE KEY-----\n"},
		{`-----BEGIN PRIVATE KEY-----\n` + body + `\n-----END PRIVATE KEY-----`,
			`-----BEGIN PRIVATE KEY-----\A` + strings.Repeat("A", len(body)) + `\A-----END PRIVATE KEY-----`},
		{"Proc-Type: " + body + "\n", "AAAA-AAAA: " + strings.Repeat("A", len(body)) + "\n"},
		{"-----BEGIN X " + body + "\n" + body, "-----BEGIN X " + body + "\n" + strings.Repeat("A", len(body))},
	} {
		b := []byte(tc.in)
		blankBase64(b)
		if string(b) != tc.want {
			t.Errorf("blankBase64(%q) = %q, want %q", tc.in, b, tc.want)
		}
	}
}

// FuzzPEMDecodes holds pemDecodes to decoding the input itself on any
// input.
func FuzzPEMDecodes(f *testing.F) {
	for _, in := range pemSeeds {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := pemDecodes(in), pemAllDecode(in); got != want {
			t.Errorf("%q: pemDecodes %v, decoding says %v", in, got, want)
		}
	})
}

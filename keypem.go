package memshuffle

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

// pemBlock is one PEM block of a key file, decoded into memory ReadPrivateKey
// owns and wipes.
type pemBlock struct {
	typ       []byte // a slice of the input, never a copy: see pemMarker
	encrypted bool   // a DEK-Info header: RFC 1421 encryption
	der       []byte
}

// errDamagedPEM is decodePEM's error for any block it cannot decode.
var errDamagedPEM = fmt.Errorf("%w: a damaged PEM block", ErrInvalidKey)

// decodePEM decodes every PEM block of in: a "-----BEGIN type-----" line,
// header lines (with a colon) and a blank line if any, base64 lines, and
// the "-----END type-----" line of the same type; text outside blocks is
// skipped. A block that does not decode (a stray character in its base64,
// a missing or mismatched END line, a marker line inside it) fails the
// whole input with errDamagedPEM.
//
// It does what encoding/pem does for the blocks of a key file, but in
// memory it owns: encoding/pem decoded a damaged block up to the fault
// into a buffer of its own and dropped it unwiped, and copied a body with
// spaces or tabs in it, with the key in both. Here the base64, spaces and
// tabs left out, goes into one buffer allocated at the input's full size,
// so it never grows and leaves an old copy behind, and is wiped before
// decodePEM returns; what it decodes is wiped too when a later block fails.
// On success the caller wipes each block's der.
func decodePEM(in []byte) (blocks []pemBlock, err error) {
	body := make([]byte, 0, len(in))
	defer func() {
		Wipe(body[:cap(body)])
		if err != nil {
			for _, b := range blocks {
				Wipe(b.der)
			}
			blocks = nil
		}
	}()
	var cur *pemBlock
	headers, hadHeaders := false, false
	for line := range bytes.Lines(in) {
		line = pemLine(line)
		if cur == nil {
			if t, ok := pemMarker(line, "-----BEGIN "); ok {
				cur, headers, hadHeaders, body = &pemBlock{typ: t}, true, false, body[:0]
			}
			continue
		}
		// Until the first line without a colon, every line is a header,
		// as encoding/pem reads them: one that looks like an END marker
		// too ends no block.
		inHeaders := headers
		if headers {
			if k, _, ok := bytes.Cut(line, []byte(":")); ok {
				cur.encrypted = cur.encrypted || string(bytes.TrimSpace(k)) == "DEK-Info"
				hadHeaders = true
				continue
			}
			headers = false
		}
		if t, ok := pemMarker(line, "-----END "); ok {
			// Headers need a body after them, as encoding/pem has it.
			if !bytes.Equal(t, cur.typ) || inHeaders && hadHeaders {
				return blocks, errDamagedPEM
			}
			cur.der = make([]byte, base64.StdEncoding.DecodedLen(len(body)))
			n, err := base64.StdEncoding.Decode(cur.der, body)
			if err != nil {
				Wipe(cur.der)
				return blocks, errDamagedPEM
			}
			cur.der = cur.der[:n]
			blocks, cur = append(blocks, *cur), nil
			continue
		}
		if bytes.HasPrefix(line, []byte("-----")) {
			return blocks, errDamagedPEM // another block begun inside this one, say
		}
		for _, c := range line {
			if c != ' ' && c != '\t' {
				body = append(body, c)
			}
		}
	}
	if cur != nil {
		return blocks, errDamagedPEM // no END line
	}
	return blocks, nil
}

// pemLine is line without its line end ("\n" or "\r\n"; a last line's
// "\r" with no "\n" stays, as in encoding/pem) and trailing spaces and
// tabs.
func pemLine(line []byte) []byte {
	if l, ok := bytes.CutSuffix(line, []byte("\n")); ok {
		line = bytes.TrimSuffix(l, []byte("\r"))
	}
	return bytes.TrimRight(line, " \t")
}

// pemMarker returns the type of a BEGIN or END line, as prefix says, as a
// slice of line. Not a string: a key whose line ends were lost, or escaped
// as in an environment variable, is one line that begins and ends like a
// marker, and its type is then the key's base64
// (TestReadPrivateKeyDamagedTextLeavesNothing).
func pemMarker(line []byte, prefix string) ([]byte, bool) {
	const dashes = "-----"
	if len(line) < len(prefix)+len(dashes) || !bytes.HasPrefix(line, []byte(prefix)) || !bytes.HasSuffix(line, []byte(dashes)) {
		return nil, false
	}
	return line[len(prefix) : len(line)-len(dashes)], true
}

// keyBlockType returns the PEM type of a private key that typ is, as a
// constant, or "" for any other type.
func keyBlockType(typ []byte) string {
	for _, t := range [...]string{"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"} {
		if string(typ) == t {
			return t
		}
	}
	return ""
}

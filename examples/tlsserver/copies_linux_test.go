package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/memshuffle/memshuffle"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// TestSeedCopies starts the server with an Ed25519 key from a PEM file,
// makes full TLS 1.3 handshakes (each one a signature), collects garbage,
// and counts the key's seed in this process's memory outside the
// Shuffler's locked, dump-excluded mappings, after 20 and after 220
// handshakes. A runtimesecret build must find at most one, the Signer's
// entry in crypto/ed25519's cache; a default build reports the counts. A
// copy kept on purpose is found at the end.
func TestSeedCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("scans the process; skipped in -short mode")
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc")
	}
	// The test's own buffers are on the heap and wiped: one on the
	// goroutine's stack would be copied, and the old copy left unwiped,
	// whenever the stack grows.
	der := heapBytes(len(ed25519PKCS8Prefix) + ed25519.SeedSize)
	copy(der, ed25519PKCS8Prefix)
	seed := der[len(ed25519PKCS8Prefix):]
	rand.Read(seed)
	p, err := memscan.NewPattern(seed)
	if err != nil {
		t.Fatal(err)
	}
	block := &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	file := filepath.Join(t.TempDir(), "tls.key")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// pem.Encode base64-encodes into small buffers of its own, which hold
	// no raw seed bytes.
	if err := pem.Encode(f, block); err != nil {
		t.Fatal(err)
	}
	f.Close()
	memshuffle.Wipe(der)

	cfg := testConfig(t, testToken)
	cfg.keyFile = file
	ts := startServer(t, cfg)
	// outside returns the seed's places outside the Shuffler's mappings.
	outside := func() []uint64 {
		t.Helper()
		res, err := memscan.ScanProcessAll(os.Getpid(), []*memscan.Pattern{p})
		if err != nil {
			t.Fatal(err)
		}
		var at []uint64
		for _, h := range res[0] {
			if m := h.Mapping; !(m.Path == "" && m.Locked && m.DontDump) {
				at = append(at, h.Addr)
			}
		}
		return at
	}
	count := func() int { t.Helper(); return len(outside()) }
	handshakes := 0
	shake := func(n int) {
		t.Helper()
		for range n {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: requestTimeout},
				Config: &tls.Config{RootCAs: ts.pool, MinVersion: tls.VersionTLS13}}
			ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
			c, err := d.DialContext(ctx, "tcp", ts.addr)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if c.(*tls.Conn).ConnectionState().DidResume {
				t.Fatal("handshake resumed; want a full one")
			}
			c.Close()
			handshakes++
		}
		for range 3 {
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, n := range []int{20, 200} {
		shake(n)
		got := count()
		t.Logf("copies of the seed after %d handshakes: %d (secret mode %v)", handshakes, got, memshuffle.SecretMode())
		if memshuffle.SecretMode() && got > 1 {
			t.Errorf("secret mode: %d copies of the seed after %d handshakes, want at most 1", got, handshakes)
		}
	}

	// Control: a copy the program keeps is found, where it is. Not by
	// counting one more than before: the stray copies of a default build
	// lie in freed heap memory, which the scan's own buffers and the GC
	// reuse between two scans.
	kept := heapBytes(ed25519.SeedSize)
	ts.srv.vault.view(ts.srv.signerKey, func(b []byte) error {
		copy(kept, b[len(ed25519PKCS8Prefix):])
		return nil
	})
	at := outside()
	if !slices.Contains(at, uint64(uintptr(unsafe.Pointer(&kept[0])))) {
		t.Errorf("control: the kept copy of the seed at %p was not found (found %d copies)", &kept[0], len(at))
	}
	runtime.KeepAlive(kept)
	memshuffle.Wipe(kept)
}

// heapBytes returns n zero bytes on the heap, never on the stack.
//
//go:noinline
func heapBytes(n int) []byte { return make([]byte, n) }

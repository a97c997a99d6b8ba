package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle"
)

// Every server in these tests listens on 127.0.0.1 only, and every request
// has a deadline.
const requestTimeout = 10 * time.Second

// lockedBuffer collects what the server logs, from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testServer struct {
	srv    *server
	addr   string // host:port
	url    string // https://host:port
	pool   *x509.CertPool
	client *http.Client
}

// testConfig is the default configuration with the token read from a file
// holding token, so tests do not depend on the environment.
func testConfig(t *testing.T, token string) config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config{
		addr:         "127.0.0.1:0",
		tokenFile:    file,
		shuffleEvery: 30 * time.Second,
		rotateEvery:  10 * time.Minute,
	}
}

// startServer runs newServer and Serve on a loopback port and returns a
// client that trusts exactly the server's certificate. Cleanup shuts the
// server down and checks that Serve returns.
func startServer(t *testing.T, cfg config) *testServer {
	t.Helper()
	logs := new(lockedBuffer)
	srv, err := newServer(cfg, log.New(logs, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	pool := x509.NewCertPool()
	pool.AddCert(srv.cert)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		MaxIdleConnsPerHost: 64,
	}
	ts := &testServer{
		srv:    srv,
		addr:   ln.Addr().String(),
		url:    "https://" + ln.Addr().String(),
		pool:   pool,
		client: &http.Client{Transport: tr, Timeout: requestTimeout},
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(requestTimeout):
			t.Errorf("Serve did not return after shutdown")
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return ts
}

// get requests path with the given Authorization header (none if empty).
func (ts *testServer) get(ctx context.Context, path, auth string) (int, string, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header, err
}

const testToken = "test-token-5d1b0e3c9a7f"

func TestSecret(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testConfig(t, testToken))
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer wrong", http.StatusUnauthorized},
		{"prefix of the token", "Bearer " + testToken[:len(testToken)-1], http.StatusUnauthorized},
		{"token and more", "Bearer " + testToken + "x", http.StatusUnauthorized},
		{"other scheme", "Basic " + testToken, http.StatusUnauthorized},
		{"no scheme", testToken, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer " + testToken, http.StatusOK},
		{"scheme in lower case", "bearer " + testToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, hdr, err := ts.get(t.Context(), "/secret", tt.auth)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want {
				t.Fatalf("status %d, want %d; body %q", status, tt.want, body)
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", hdr.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, testToken) {
				t.Errorf("the response carries the token: %q", body)
			}
		})
	}
}

// Many requests check the token at once, through shared views, over many
// connections (and so many concurrent handshakes and signatures), while the
// Shuffler shuffles and rotates its key every few milliseconds.
func TestSecretConcurrent(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, testToken)
	cfg.shuffleEvery = time.Millisecond
	cfg.rotateEvery = 3 * time.Millisecond
	ts := startServer(t, cfg)

	const workers, perWorker = 32, 8
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				auth, want := "Bearer "+testToken, http.StatusOK
				if (w+i)%3 == 0 {
					auth, want = "Bearer not-"+testToken, http.StatusUnauthorized
				}
				status, body, _, err := ts.get(ctx, "/secret", auth)
				if err != nil {
					errs <- err
					continue
				}
				if status != want {
					errs <- fmt.Errorf("status %d, want %d; body %q", status, want, body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 5 {
		t.Errorf("... %d errors in all", n)
	}

	// The maintenance goroutine ran alongside; give it a bounded moment in
	// case every request was faster than its timers.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := ts.srv.vault.s.Stats()
		if st.Shuffles > 0 && st.KeyRotations > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no shuffle or no rotation within 5s: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Both secrets are at rest again, and still right. Every request has
	// returned, but not every handshake: the client's transport may have
	// dialled a connection it then found no use for, whose handshake, and
	// the signature under a view of the key in it, the server finishes
	// afterwards. So the borrows are given a bounded moment to end; one that
	// never ends still fails.
	deadline = time.Now().Add(5 * time.Second)
	for {
		st := ts.srv.vault.s.Stats()
		if st.Rented+st.Viewed == 0 && st.Entries == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("5s after the requests: %d rented, %d viewed, %d entries; want 0, 0 and 2", st.Rented, st.Viewed, st.Entries)
			break
		}
		time.Sleep(time.Millisecond)
	}
	if status, _, _, err := ts.get(t.Context(), "/secret", "Bearer "+testToken); err != nil || status != http.StatusOK {
		t.Errorf("after shuffles and rotations: status %d, error %v", status, err)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testConfig(t, testToken))
	status, body, hdr, err := ts.get(t.Context(), "/stats", "")
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q", status, hdr.Get("Content-Type"))
	}
	var st memshuffle.Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	// The key (Ed25519 PKCS#8, 48 bytes) and the token, at rest.
	keySize := len(ed25519PKCS8Prefix) + ed25519.SeedSize
	if st.Entries != 2 || st.Rented+st.Viewed != 0 || st.LiveBytes != int64(keySize+len(testToken)) {
		t.Errorf("entries %d, rented %d, viewed %d, live bytes %d; want 2, 0, 0, %d",
			st.Entries, st.Rented, st.Viewed, st.LiveBytes, keySize+len(testToken))
	}
	if strings.Contains(body, testToken) {
		t.Errorf("/stats shows the token")
	}
}

// The handshake succeeds only for a client that trusts the certificate, and
// in TLS 1.3 a full handshake carries a signature, made by the Signer, that
// the client checks against the certificate's public key.
func TestHandshake(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testConfig(t, testToken))
	pub := ts.srv.signer.Public().(ed25519.PublicKey)

	dial := func(cfg *tls.Config) (tls.ConnectionState, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: requestTimeout}, Config: cfg}
		ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", ts.addr)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState(), nil
	}

	// Several full handshakes at once: no session cache, so none resumes.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			cs, err := dial(&tls.Config{RootCAs: ts.pool, MinVersion: tls.VersionTLS13})
			if err != nil {
				t.Errorf("handshake with the pinned certificate: %v", err)
				return
			}
			if cs.Version != tls.VersionTLS13 || cs.DidResume {
				t.Errorf("version %x, resumed %v; want a full TLS 1.3 handshake", cs.Version, cs.DidResume)
			}
			got, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
			if !ok || !got.Equal(pub) {
				t.Errorf("the server presented key %v, want %x", cs.PeerCertificates[0].PublicKey, pub)
			}
		})
	}
	wg.Wait()

	// The certificate is signed by the same key.
	cert := ts.srv.cert
	if cert.SignatureAlgorithm != x509.PureEd25519 || !ed25519.Verify(pub, cert.RawTBSCertificate, cert.Signature) {
		t.Errorf("the certificate's signature does not verify against the public key")
	}

	// A client that trusts something else refuses the server.
	other, err := newServer(testConfig(t, testToken), log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherPool := x509.NewCertPool()
	otherPool.AddCert(other.cert)
	if _, err := dial(&tls.Config{RootCAs: otherPool, MinVersion: tls.VersionTLS13}); err == nil {
		t.Errorf("handshake succeeded with another certificate pinned")
	}
}

// RFC 8032, section 7.1, tests 1 and 2: the signer gives the standard
// public key and signatures for a key read from a -key file, in PEM.
func TestSignerKnownAnswer(t *testing.T) {
	t.Parallel()
	vectors := []struct{ seed, pub, msg, sig string }{
		{
			"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
			"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
			"",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
		},
		{
			"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
			"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
			"72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
		},
	}
	for i, v := range vectors {
		t.Run(fmt.Sprint("test", i+1), func(t *testing.T) {
			cfg := testConfig(t, testToken)
			cfg.keyFile = filepath.Join(t.TempDir(), "tls.key")
			der := append(append([]byte(nil), ed25519PKCS8Prefix...), unhex(t, v.seed)...)
			if err := os.WriteFile(cfg.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
			srv, err := newServer(cfg, log.New(io.Discard, "", 0))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if got := srv.signer.Public().(ed25519.PublicKey); hex.EncodeToString(got) != v.pub {
				t.Errorf("public key %x, want %s", got, v.pub)
			}
			sig, err := srv.signer.Sign(nil, unhex(t, v.msg), crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(sig) != v.sig {
				t.Errorf("signature %x, want %s", sig, v.sig)
			}
			// Prehashed messages are for Ed25519ph, not plain Ed25519.
			if _, err := srv.signer.Sign(nil, make([]byte, 32), crypto.SHA256); err == nil {
				t.Errorf("Sign with SHA-256 options succeeded")
			}
		})
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeyFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pemZeros := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: make([]byte, 48)})
	tests := []struct {
		name    string
		content []byte // nil: no such file
		want    string
		is      error // the error must also match this, if set
	}{
		{"missing", nil, "key:", fs.ErrNotExist},
		{"empty", []byte{}, "invalid or unsupported key", memshuffle.ErrInvalidKey},
		{"raw seed", make([]byte, 32), "invalid or unsupported key", memshuffle.ErrInvalidKey},
		{"PEM of zeros", pemZeros, "invalid or unsupported key", memshuffle.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, testToken)
			cfg.keyFile = filepath.Join(dir, tt.name)
			if tt.content != nil {
				if err := os.WriteFile(cfg.keyFile, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			srv, err := newServer(cfg, log.New(io.Discard, "", 0))
			if err == nil {
				srv.Close()
				t.Fatal("newServer succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to mention %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
		})
	}
}

// tokenOf reads the token back out of the server, for the test only: the
// string is exactly the kind of heap copy the server itself never makes.
func tokenOf(t *testing.T, srv *server) string {
	t.Helper()
	var tok string
	if err := srv.vault.view(srv.token, func(b []byte) error {
		tok = string(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    string // the token; "" for an error
	}{
		{"newline", "tok-1\n", "tok-1"},
		{"CRLF", "tok-2\r\n", "tok-2"},
		{"no newline", "tok-3", "tok-3"},
		{"inner newline kept", "tok\n4\n", "tok\n4"},
		{"only a newline", "\n", ""},
		{"empty", "", ""},
		{"too long", strings.Repeat("x", maxTokenSize+1), ""},
		{"longest", strings.Repeat("y", maxTokenSize), strings.Repeat("y", maxTokenSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, testToken)
			cfg.tokenFile = filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(cfg.tokenFile, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			srv, err := newServer(cfg, log.New(io.Discard, "", 0))
			if tt.want == "" {
				if err == nil {
					srv.Close()
					t.Fatal("newServer succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if got := tokenOf(t, srv); got != tt.want || srv.generatedToken {
				t.Errorf("token %q (generated %v), want %q", got, srv.generatedToken, tt.want)
			}
			// The trimmed-off entry is freed, not kept beside the token.
			if st := srv.vault.s.Stats(); st.Entries != 2 {
				t.Errorf("%d entries, want 2 (seed and token)", st.Entries)
			}
		})
	}

	t.Run("directory", func(t *testing.T) {
		cfg := testConfig(t, testToken)
		cfg.tokenFile = dir
		if srv, err := newServer(cfg, log.New(io.Discard, "", 0)); err == nil {
			srv.Close()
			t.Fatal("newServer succeeded with a directory as the token file")
		}
	})
}

// Not parallel: it sets the environment.
func TestTokenFromEnv(t *testing.T) {
	t.Setenv(tokenEnv, "env-token-7c2f")
	cfg := testConfig(t, testToken)
	cfg.tokenFile = ""
	srv, err := newServer(cfg, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got := tokenOf(t, srv); got != "env-token-7c2f" || srv.generatedToken {
		t.Errorf("token %q (generated %v), want the environment's", got, srv.generatedToken)
	}
	if v, ok := os.LookupEnv(tokenEnv); ok {
		t.Errorf("%s still set to %q", tokenEnv, v)
	}
}

// Not parallel: it sets the environment.
func TestTokenGenerated(t *testing.T) {
	t.Setenv(tokenEnv, "") // empty counts as unset
	cfg := testConfig(t, testToken)
	cfg.tokenFile = ""
	seen := map[string]bool{}
	for range 3 {
		srv, err := newServer(cfg, log.New(io.Discard, "", 0))
		if err != nil {
			t.Fatal(err)
		}
		tok := tokenOf(t, srv)
		srv.Close()
		if !srv.generatedToken || len(tok) != tokenLen || strings.Trim(tok, "0123456789abcdef") != "" {
			t.Errorf("token %q (generated %v), want %d hex digits", tok, srv.generatedToken, tokenLen)
		}
		if seen[tok] {
			t.Errorf("token %q generated twice", tok)
		}
		seen[tok] = true
	}
}

// run end to end, as main calls it: a generated token printed once, the
// certificate written for clients, a request, and a shutdown through ctx.
// Not parallel: it sets the environment.
func TestRun(t *testing.T) {
	t.Setenv(tokenEnv, "")
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, stdout := io.Pipe()
	ran := make(chan error, 1)
	go func() {
		ran <- run(ctx, []string{"-addr", "127.0.0.1:0", "-cert-out", certFile, "-shuffle", "5ms", "-rotate", "10ms"},
			stdout, io.Discard)
		stdout.Close()
	}()

	var token, url string
	lines := bufio.NewScanner(out)
	for url == "" && lines.Scan() {
		line := lines.Text()
		if v, ok := strings.CutPrefix(line, "API token (shown once, keep it): "); ok {
			token = v
		}
		if v, ok := strings.CutPrefix(line, "listening on "); ok {
			url = v
		}
	}
	go io.Copy(io.Discard, out) // whatever else run prints
	if url == "" {
		cancel()
		t.Fatalf("run printed no address; it returned %v", <-ran)
	}
	if len(token) != tokenLen {
		t.Fatalf("token %q, want %d hex digits", token, tokenLen)
	}
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("listening on %s, want loopback", url)
	}

	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("-cert-out wrote no certificate:\n%s", pemBytes)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: requestTimeout}
	for _, c := range []struct {
		auth string
		want int
	}{{"Bearer " + token, http.StatusOK}, {"Bearer 0" + token[1:], http.StatusUnauthorized}} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/secret", nil)
		req.Header.Set("Authorization", c.auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want && token[0] != '0' {
			t.Errorf("status %d, want %d", resp.StatusCode, c.want)
		}
	}
	tr.CloseIdleConnections()

	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(requestTimeout):
		t.Fatal("run did not return after ctx was cancelled")
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // "" for flag.ErrHelp
	}{
		{[]string{"-h"}, ""},
		{[]string{"-shuffle", "0"}, "positive"},
		{[]string{"-rotate", "-1s"}, "positive"},
		{[]string{"-no-such-flag"}, "not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		err := run(t.Context(), tt.args, io.Discard, io.Discard)
		switch {
		case tt.want == "" && !errors.Is(err, flag.ErrHelp):
			t.Errorf("run %q: %v, want flag.ErrHelp", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("run %q: %v, want an error mentioning %q", tt.args, err, tt.want)
		}
	}
}

// Close waits for a view in progress instead of wiping the token under it;
// afterwards views and signatures fail cleanly.
func TestCloseWaitsForViews(t *testing.T) {
	t.Parallel()
	srv, err := newServer(testConfig(t, testToken), log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	inView, release := make(chan struct{}), make(chan struct{})
	viewed := make(chan error, 1)
	go func() {
		viewed <- srv.vault.view(srv.token, func(tok []byte) error {
			close(inView)
			<-release
			if string(tok) != testToken { // still mapped, still plaintext
				return fmt.Errorf("the token changed under the view")
			}
			return nil
		})
	}()
	<-inView
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a view was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-viewed; err != nil {
		t.Error(err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := srv.signer.Sign(nil, []byte("m"), crypto.Hash(0)); !errors.Is(err, memshuffle.ErrClosed) {
		t.Errorf("Sign after Close: %v, want ErrClosed", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "/secret", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if _, err := srv.authorized(req); !errors.Is(err, memshuffle.ErrClosed) {
		t.Errorf("authorized after Close: %v, want ErrClosed", err)
	}
}

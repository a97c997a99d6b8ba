package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/memshuffle/memshuffle"
)

// vault is a Shuffler that shuts down only between views. Close during a
// Borrow function never faults (it keeps the memory mapped until the
// function returns), but it wipes the entry at once: a view in progress
// would go on reading zeros where the token was and then fail with
// memshuffle.ErrClosed. Every view here holds a read lock for its short
// length, and close takes the write lock, so Close waits for the views in
// progress, which finish with the real bytes; views after it fail with
// memshuffle.ErrClosed. (Purge, which PurgeOnSignal calls, must not wait:
// a view in progress reads zeros.)
type vault struct {
	mu sync.RWMutex
	s  *memshuffle.Shuffler
}

// view calls fn with a shared, read-only view of the entry. fn must not
// keep the slice, write to it, or block.
func (v *vault) view(h memshuffle.Handle, fn func([]byte) error) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return memshuffle.BorrowViewSlice(v.s, h, fn)
}

func (v *vault) close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.s.Close()
}

// server is the HTTPS service and the secrets it keeps.
type server struct {
	vault          *vault
	signer         *vaultSigner
	signerKey      memshuffle.Handle // the entry holding signer's key, PKCS#8 DER
	cert           *x509.Certificate // self-signed, for signer's key; public
	token          memshuffle.Handle
	generatedToken bool // the token was made here, and must be shown once

	shuffleEvery, rotateEvery time.Duration
	log                       *log.Logger
}

// newServer makes the Shuffler, puts the key and the token in it, and signs
// the certificate. Close releases it all.
func newServer(cfg config, logger *log.Logger) (*server, error) {
	// Default options: four shards per processor, arenas locked into RAM
	// where the system allows (Stats tells; see LockedBytes), excluded from
	// core dumps and zeroed in forked children on Linux.
	s, err := memshuffle.New()
	if err != nil {
		return nil, err
	}
	srv := &server{
		vault:        &vault{s: s},
		shuffleEvery: cfg.shuffleEvery,
		rotateEvery:  cfg.rotateEvery,
		log:          logger,
	}
	ok := false
	defer func() {
		if !ok {
			srv.vault.close() // wipes whatever was loaded
		}
	}()

	key, err := loadKey(s, cfg.keyFile)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	srv.signerKey = key
	if srv.signer, err = newVaultSigner(srv.vault, key); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if srv.cert, err = selfSigned(srv.signer, cfg.addr, time.Now()); err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if srv.token, srv.generatedToken, err = loadToken(s, cfg.tokenFile); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	ok = true
	return srv, nil
}

// Close wipes every secret and unmaps the Shuffler's memory, once no view
// is in progress. Call it after Serve has returned.
func (srv *server) Close() error { return srv.vault.close() }

// tlsConfig serves the certificate with srv.signer as its private key:
// crypto/tls calls Sign for each full handshake and never sees the key.
func (srv *server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{srv.cert.Raw},
			PrivateKey:  srv.signer,
			Leaf:        srv.cert,
		}},
	}
}

func (srv *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /secret", srv.handleSecret)
	mux.HandleFunc("GET /stats", srv.handleStats)
	return mux
}

// handleSecret stands for any endpoint that needs the token.
func (srv *server) handleSecret(w http.ResponseWriter, r *http.Request) {
	ok, err := srv.authorized(r)
	if err != nil {
		// The Shuffler is closed or purged: the server is going away.
		srv.log.Printf("checking the token: %v", err)
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tlsserver"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	io.WriteString(w, "ok: the token matched\n")
}

// handleStats shows the Shuffler's Stats: counts, sizes and timings, never
// a secret or an address. Left open here for the demo; in a real service
// it belongs behind the token, or on an internal listener.
func (srv *server) handleStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(srv.vault.s.Stats())
}

// writeToken writes the token to w straight from a view of its entry. fmt
// would first copy it into a buffer of its own on the heap; an *os.File
// hands the entry's bytes to the write system call as they are.
func (srv *server) writeToken(w io.Writer) error {
	return srv.vault.view(srv.token, func(tok []byte) error {
		_, err := w.Write(tok)
		return err
	})
}

// Serve serves HTTPS on ln until ctx is done, then shuts down: it stops
// accepting, waits up to 5 seconds for requests in progress, and stops the
// maintenance goroutine. It returns nil after a shutdown asked for by ctx.
// Call it once.
func (srv *server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           srv.handler(),
		TLSConfig:         srv.tlsConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          srv.log,
	}

	mctx, stopMaintenance := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.maintain(mctx) })
	defer func() {
		stopMaintenance()
		wg.Wait()
	}()

	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-served: // the listener failed
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		hs.Close() // drop the connections still busy
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// maintain shuffles and rotates the key on their timers until ctx is done.
//
// Shuffle moves every entry not in use to fresh memory in a random order and
// wipes where it was, so an address learned once (from an old dump, say)
// soon points at nothing. RotateKey re-encrypts everything under a new key,
// so a key that leaked decrypts nothing taken after the next rotation. Both
// work one shard at a time, alongside the handlers; an entry being viewed
// stays where it is and is encrypted under the new key when its last viewer
// is done.
func (srv *server) maintain(ctx context.Context) {
	shuffle := time.NewTicker(srv.shuffleEvery)
	defer shuffle.Stop()
	rotate := time.NewTicker(srv.rotateEvery)
	defer rotate.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-shuffle.C:
			if err := srv.vault.s.Shuffle(); err != nil {
				srv.log.Printf("shuffle: %v", err)
			}
		case <-rotate.C:
			if err := srv.vault.s.RotateKey(nil, nil); err != nil {
				srv.log.Printf("rotating the key: %v", err)
			}
		}
	}
}

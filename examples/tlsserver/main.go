// Command tlsserver is a small HTTPS service that keeps its two secrets in a
// memshuffle Shuffler: the Ed25519 private key behind its TLS certificate,
// and the API token its clients must present. It is meant to be copied
// from. Each place where a secret has to leave the Shuffler (to sign, to
// compare, to print) says so, and says what memshuffle can and cannot do
// about the copy.
//
// Usage:
//
//	go run ./examples/tlsserver [flags]
//
// Flags:
//
//	-addr ADDR         listen address (default 127.0.0.1:8443)
//	-key FILE          the TLS private key, PEM or DER (see signer.go);
//	                   without it a new Ed25519 key is generated at start-up
//	-token-file FILE   the API token (see token.go); without it $API_TOKEN,
//	                   and without that a random token printed once
//	-cert-out FILE     write the self-signed certificate here (PEM), so that
//	                   clients can trust exactly it (curl --cacert FILE)
//	-shuffle DURATION  how often to move every entry (default 30s)
//	-rotate DURATION   how often to re-encrypt under a new key (default 10m)
//
// Endpoints: GET /secret answers 200 to "Authorization: Bearer <token>" and
// 401 to anything else; GET /stats shows the Shuffler's Stats as JSON.
//
// SIGINT and SIGTERM wipe every secret, then end the process at once
// (memshuffle.PurgeOnSignal): requests in flight are dropped rather than
// finished, so that nothing is left to find after the process goes.
//
// README.md tells what each part protects and what it does not.
package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"github.com/memshuffle/memshuffle"
)

func main() {
	// Some copies of the secrets are out of memshuffle's reach: the ones
	// crypto/ed25519 makes while signing (signer.go), and the token as each
	// request carries it (token.go). Turning core dumps off for the process
	// keeps those copies out of crash dumps too, and makes the process
	// undumpable, so other processes of the same user cannot read its memory
	// either. It is done here rather than in run so that tests, which call
	// run, leave the test process as it was.
	if err := memshuffle.DisableCoreDumps(); err != nil {
		fmt.Fprintln(os.Stderr, "tlsserver: warning: core dumps stay enabled:", err)
	}
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsserver:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	addr         string
	keyFile      string
	tokenFile    string
	certOut      string
	shuffleEvery time.Duration
	rotateEvery  time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("tlsserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8443", "listen `address`")
	fs.StringVar(&cfg.keyFile, "key", "", "read the TLS private key (PEM or DER: PKCS#8, PKCS#1, SEC 1) from `file` (default: generate an Ed25519 key)")
	fs.StringVar(&cfg.tokenFile, "token-file", "", "read the API token from `file` (default: $API_TOKEN, else generate one)")
	fs.StringVar(&cfg.certOut, "cert-out", "", "write the self-signed certificate (PEM) to `file`")
	fs.DurationVar(&cfg.shuffleEvery, "shuffle", 30*time.Second, "move every entry this often")
	fs.DurationVar(&cfg.rotateEvery, "rotate", 10*time.Minute, "re-encrypt everything under a new key this often")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if cfg.shuffleEvery <= 0 || cfg.rotateEvery <= 0 {
		return config{}, errors.New("-shuffle and -rotate must be positive durations")
	}
	return cfg, nil
}

// run is the whole program: it parses args, sets up the secrets and the
// server, and serves until ctx is done, then shuts down and wipes
// everything. The generated token, if any, and the address go to stdout;
// errors the server logs go to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	srv, err := newServer(cfg, log.New(stderr, "tlsserver: ", log.LstdFlags))
	if err != nil {
		return err
	}
	// Deferred calls run last first: Close wipes and unmaps the secrets,
	// then stop removes the signal handler, so a signal at any moment
	// before Close has returned still purges them.
	stop := memshuffle.PurgeOnSignal(srv.vault.s)
	defer stop()
	defer srv.Close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	if cfg.certOut != "" {
		block := &pem.Block{Type: "CERTIFICATE", Bytes: srv.cert.Raw}
		if err := os.WriteFile(cfg.certOut, pem.EncodeToMemory(block), 0o644); err != nil {
			ln.Close()
			return err
		}
	}
	if srv.generatedToken {
		// The only time the token leaves the Shuffler on purpose. It then
		// sits in the terminal's scrollback, or in whatever stdout goes to.
		io.WriteString(stdout, "API token (shown once, keep it): ")
		if err := srv.writeToken(stdout); err != nil {
			ln.Close()
			return err
		}
		io.WriteString(stdout, "\n")
	}
	fmt.Fprintf(stdout, "listening on https://%s\n", ln.Addr())
	return srv.Serve(ctx, ln)
}

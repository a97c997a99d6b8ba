package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/awnumar/memguard"
	"github.com/memshuffle/memshuffle"
)

// A holder keeps secrets alive the way one library would: add stores one
// (and may wipe secret), note describes the library's own view of its
// memory, if it has one, and refSize is the size of what the program keeps
// per secret to reach it (a Handle, a pointer, a slice header): memory
// counted in the RSS figures that the program, not the library, holds.
type holder interface {
	add(secret []byte) error
	note() string
	refSize() int64
}

// holders make a holder for n secrets.
var holders = map[string]func(n int) (holder, error){
	"memshuffle":       newShuffleHolder,
	"memguard-enclave": func(n int) (holder, error) { return &enclaveHolder{make([]*memguard.Enclave, 0, n)}, nil },
	"memguard-buffer":  func(n int) (holder, error) { return &bufferHolder{make([]*memguard.LockedBuffer, 0, n)}, nil },
	"heap":             func(n int) (holder, error) { return &heapHolder{make([][]byte, 0, n)}, nil },
}

// shuffleHolder keeps each secret as a memshuffle entry, written through a
// rent, with default options.
type shuffleHolder struct {
	s  *memshuffle.Shuffler
	hs []memshuffle.Handle
}

func newShuffleHolder(n int) (holder, error) {
	s, err := memshuffle.New()
	if err != nil {
		return nil, err
	}
	return &shuffleHolder{s, make([]memshuffle.Handle, 0, n)}, nil
}

func (h *shuffleHolder) add(secret []byte) error {
	e, err := memshuffle.Alloc[byte](h.s, len(secret))
	if err != nil {
		return err
	}
	p, err := memshuffle.RentSlice[byte](h.s, e)
	if err != nil {
		return err
	}
	copy(p, secret)
	if err := h.s.Return(e); err != nil {
		return err
	}
	h.hs = append(h.hs, e)
	return nil
}

func (h *shuffleHolder) refSize() int64 { return int64(unsafe.Sizeof(memshuffle.Handle{})) }

func (h *shuffleHolder) note() string {
	st := h.s.Stats()
	return fmt.Sprintf("Stats: %d entries, %.1f MiB live, %.1f MiB mapped, %.1f MiB locked, %d arenas",
		st.Entries, mb(st.LiveBytes), mb(st.MappedBytes), mb(st.LockedBytes), st.Arenas)
}

// enclaveHolder keeps each secret sealed in a memguard Enclave: ciphertext
// on the Go heap, memguard's form for secrets at rest.
type enclaveHolder struct{ es []*memguard.Enclave }

func (h *enclaveHolder) add(secret []byte) error {
	e := memguard.NewEnclave(secret) // wipes secret
	if e == nil {
		return errors.New("memguard.NewEnclave returned nil")
	}
	h.es = append(h.es, e)
	return nil
}

func (h *enclaveHolder) note() string   { return "" }
func (h *enclaveHolder) refSize() int64 { return int64(unsafe.Sizeof(h.es[0])) }

// bufferHolder keeps each secret in a memguard LockedBuffer: its own
// mapping, locked, between guard pages.
type bufferHolder struct{ bs []*memguard.LockedBuffer }

func (h *bufferHolder) add(secret []byte) error {
	b := memguard.NewBufferFromBytes(secret) // wipes secret
	if b.Size() != len(secret) {
		return fmt.Errorf("memguard.NewBufferFromBytes returned %d bytes, want %d", b.Size(), len(secret))
	}
	h.bs = append(h.bs, b)
	return nil
}

func (h *bufferHolder) note() string   { return "" }
func (h *bufferHolder) refSize() int64 { return int64(unsafe.Sizeof(h.bs[0])) }

// heapHolder keeps each secret in a plain []byte: no protection at all.
type heapHolder struct{ bs [][]byte }

func (h *heapHolder) add(secret []byte) error {
	h.bs = append(h.bs, append([]byte(nil), secret...))
	return nil
}

func (h *heapHolder) note() string   { return "" }
func (h *heapHolder) refSize() int64 { return int64(unsafe.Sizeof(h.bs[0])) }

// runChild makes n secrets of size bytes with lib, reporting its memory
// before, at checkpoints, and at the end as JSON lines on w. A panic in
// the library (memguard panics when the kernel refuses it) is reported as
// a "failed" event. It returns the exit status.
func runChild(w io.Writer, lib string, n, size int) int {
	enc := json.NewEncoder(w)
	emit := func(e event) {
		if err := enc.Encode(e); err != nil {
			fmt.Fprintln(os.Stderr, "footprint child:", err)
			os.Exit(2)
		}
	}
	mk, ok := holders[lib]
	if !ok || n < 1 || size < 1 {
		fmt.Fprintf(os.Stderr, "footprint child: bad arguments lib=%q n=%d size=%d\n", lib, n, size)
		return 2
	}

	runtime.GC()
	debug.FreeOSMemory()
	base, err := measure()
	if err != nil {
		fmt.Fprintln(os.Stderr, "footprint child:", err)
		return 2
	}
	base.Kind = "baseline"
	emit(base)

	h, err := mk(n)
	if err != nil {
		emit(event{Kind: "failed", Error: err.Error()})
		return 1
	}
	// Checkpoints often enough to say where a failing library got to, and
	// rarely enough that reading /proc does not dominate.
	step := min(max(n/64, 256), 1024)
	secret := make([]byte, size)
	var spent, paused time.Duration
	made := 0
	for made < n {
		rand.Read(secret)
		start := time.Now()
		if err := safeAdd(h, secret); err != nil {
			emit(event{Kind: "failed", N: made, Error: shorten(err.Error())})
			return 1
		}
		spent += time.Since(start)
		made++
		if made%256 == 0 && made < n {
			// A count alone, cheap enough to write often, so that a crash
			// is placed to within 256 secrets.
			emit(event{Kind: "count", N: made})
		}
		if made%step == 0 && made < n {
			start := time.Now()
			e, err := measure()
			if err == nil {
				e.Kind, e.N = "progress", made
				e.Refs = int64(made) * h.refSize()
				e.NsPerSecret = float64(spent.Nanoseconds()) / float64(made)
				emit(e)
			}
			paused += time.Since(start)
		}
	}
	clear(secret)
	runtime.GC()
	e, err := measure()
	if err != nil {
		fmt.Fprintln(os.Stderr, "footprint child:", err)
		return 2
	}
	e.Kind, e.N = "done", made
	e.Refs = int64(made) * h.refSize()
	e.NsPerSecret = float64(spent.Nanoseconds()) / float64(made)
	e.Note = h.note()
	emit(e)
	runtime.KeepAlive(h)
	return 0
}

// shorten keeps an error message to one readable line. memguard's purge
// joins one error per buffer it failed to destroy with "; ", tens of
// thousands of them when it runs out of mappings.
func shorten(msg string) string {
	if parts := strings.Split(msg, "; "); len(parts) > 2 {
		msg = fmt.Sprintf("%s; … and %d more errors", parts[0], len(parts)-1)
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	return msg
}

// safeAdd turns a panic in the library into an error.
func safeAdd(h holder, secret []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return h.add(secret)
}

// measure reads this process's resident and locked memory and counts its
// mappings.
func measure() (event, error) {
	var e event
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return e, err
	}
	f := strings.Fields(string(statm))
	if len(f) < 2 {
		return e, fmt.Errorf("/proc/self/statm: %q", statm)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return e, fmt.Errorf("/proc/self/statm: %w", err)
	}
	e.RSS = pages * int64(os.Getpagesize())

	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return e, err
	}
	if e.Locked, err = statusKB(string(status), "VmLck"); err != nil {
		return e, err
	}

	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return e, err
	}
	e.Maps = strings.Count(string(maps), "\n")
	return e, nil
}

// statusKB returns the field of /proc/PID/status text, given in kB, in
// bytes.
func statusKB(status, field string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/self/status: bad %s line %q", field, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status: %s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/self/status: no %s line", field)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

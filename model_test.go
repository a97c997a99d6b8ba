package memshuffle

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"
)

// opSource supplies the bytes that choose the model's operations and their
// arguments: a random stream for TestRandomOps, the fuzzer's input for
// FuzzOps.
type opSource interface {
	// next returns the next byte, or false when there are none left.
	next() (byte, bool)
}

type randSource struct {
	r    *mrand.Rand
	left int
}

func (s *randSource) next() (byte, bool) {
	if s.left <= 0 {
		return 0, false
	}
	s.left--
	return byte(s.r.Uint32()), true
}

type byteSource struct{ b []byte }

func (s *byteSource) next() (byte, bool) {
	if len(s.b) == 0 {
		return 0, false
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c, true
}

// opModel drives a Shuffler with every operation, keeps what each entry
// must hold, and checks after every step both the Shuffler's invariants and
// a few entries against the model.
type opModel struct {
	t       testing.TB
	s       *Shuffler
	src     opSource
	values  model             // every live entry, borrowed or not
	hs      []Handle          // live and expired handles
	rented  map[Handle][]byte // rented entries and their memory
	viewed  map[Handle]int    // viewed entries and their viewer count
	expired map[Handle]bool   // handles that answer ErrExpired
	views   map[Handle][]byte // the memory of viewed entries
	// The Shuffler keeps expiries on clock; deadline holds those of
	// entries not yet expired in the model.
	clock    *testClock
	deadline map[Handle]int64
	purged   bool
	step     int
	ended    bool
	last     byte
	// With tracing, every step's outcome goes to trace: what each call
	// answered, the Stats counts, and where every entry sits.
	tracing bool
	trace   []string
}

// newOpModel puts s on a clock of the model's own, which the operations
// move: s must not be shared yet.
func newOpModel(t testing.TB, s *Shuffler, src opSource) *opModel {
	clock := newTestClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	useClock(s, clock)
	return &opModel{t: t, s: s, src: src, values: model{}, rented: map[Handle][]byte{},
		viewed: map[Handle]int{}, expired: map[Handle]bool{}, views: map[Handle][]byte{},
		clock: clock, deadline: map[Handle]int64{}}
}

// due reports whether h's deadline has passed on the clock: its handle
// answers ErrExpired from then on, whether or not its entry is wiped yet.
func (m *opModel) due(h Handle) bool {
	d, ok := m.deadline[h]
	return ok && d <= m.clock.now()
}

// gone reports whether h answers ErrExpired to a call that needs a live
// entry.
func (m *opModel) gone(h Handle) bool { return m.expired[h] || m.due(h) }

// expire records that h's entry has been wiped at its deadline.
func (m *opModel) expire(h Handle) {
	delete(m.values, h)
	delete(m.deadline, h)
	m.expired[h] = true
}

// settle expires, in the model, every unborrowed entry whose deadline has
// passed: the Shuffler wipes it at its next access or sweep, and it
// answers as wiped until then. Borrowed ones wait for their return.
func (m *opModel) settle() {
	for h := range m.deadline {
		if m.due(h) && !m.borrowed(h) {
			m.expire(h)
		}
	}
}

// alloced records a new entry of n zero bytes, with the default TTL's
// deadline if there is one.
func (m *opModel) alloced(h Handle, n int) {
	m.values[h] = make([]byte, n)
	m.hs = append(m.hs, h)
	if ttl := m.s.cfg.ttl; ttl > 0 {
		m.deadline[h] = addNanos(m.clock.now(), ttl)
	}
}

// replay makes what m's run does depend on its operations and seed alone,
// so that a failing sequence fails again however often it is run: New
// seeds each shard's generator (Shuffle's permutations, background orders)
// from crypto/rand, and the shard an Alloc picks follows a sync.Pool (see
// Shuffler.replayShard). Both become streams drawn from seed. (Entries due
// together are wiped in the order of their deadlines, then slots: the same
// in every run.) sw, from 0
// to 8, is how many eighths of allocations go to another shard than the
// one before: with 0 all go to one shard, as one goroutine's mostly do;
// under the race detector, which drops a quarter of a Pool's items, about
// two eighths move. It must run before s is shared.
func (m *opModel) replay(seed uint64, sw uint32) {
	for i := range m.s.shards {
		var rs [32]byte
		binary.LittleEndian.PutUint64(rs[:], seed)
		binary.LittleEndian.PutUint64(rs[8:], uint64(i))
		m.s.shards[i].rng = mrand.New(mrand.NewChaCha8(rs))
	}
	r := mrand.New(mrand.NewPCG(seed, 0x5ead))
	n := uint32(len(m.s.shards))
	cur := r.Uint32N(n)
	m.s.replayShard = func() uint32 {
		if n > 1 && r.Uint32N(8) < sw {
			cur = (cur + 1 + r.Uint32N(n-1)) % n
		}
		return cur
	}
}

// byHandle returns the handles of mp in the order they were made in, so
// that calls made for each of them happen in the same order every run:
// a map's own order is random.
func byHandle[V any](mp map[Handle]V) []Handle {
	return slices.SortedFunc(maps.Keys(mp), func(a, b Handle) int { return cmp.Compare(a.id, b.id) })
}

// note records, when tracing, what a call answered.
func (m *opModel) note(call string, err error) {
	if m.tracing {
		m.trace = append(m.trace, fmt.Sprintf("%d %s: %v", m.step, call, err))
	}
}

// traceStep records, when tracing, the Stats counts after a step and
// where every entry sits: shard, slot, generation, state, arena and
// offset. It reads the slots under their shards' locks without lookup,
// which would wipe entries past their deadline.
func (m *opModel) traceStep(op byte) {
	if !m.tracing {
		return
	}
	st := m.s.Stats()
	// Durations and memory locking depend on the machine and on what
	// else the process has locked, not on the operations.
	st.ShuffleTime, st.ShuffleMax, st.BackgroundMax = 0, 0, 0
	st.LockedBytes, st.UnlockedBytes, st.LockFailures, st.LockLimit = 0, 0, 0, 0
	line := fmt.Sprintf("%d op %d: %+v;", m.step, op, st)
	if !m.purged {
		for _, h := range m.hs {
			sh := &m.s.shards[h.shard()]
			sh.mu.Lock()
			sl := sh.Slots.At(h.slot())
			line += fmt.Sprintf(" %d:%d:%d=%d@%d+%d", h.shard(), h.slot(), h.gen(), sl.State(), sl.Arena(), sl.Off)
			sh.mu.Unlock()
		}
	}
	m.trace = append(m.trace, line)
}

func (m *opModel) byte() byte {
	b, ok := m.src.next()
	if !ok {
		m.ended = true
	}
	m.last = b
	return b
}

func (m *opModel) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("step %d: "+format, append([]any{m.step}, args...)...)
}

// pick returns one of the handles, live or expired.
func (m *opModel) pick() (Handle, bool) {
	if len(m.hs) == 0 {
		return Handle{}, false
	}
	return m.hs[int(m.byte())%len(m.hs)], true
}

func (m *opModel) forget(h Handle) {
	delete(m.values, h)
	delete(m.expired, h)
	delete(m.deadline, h)
	for i := range m.hs {
		if m.hs[i] == h {
			m.hs = append(m.hs[:i], m.hs[i+1:]...)
			return
		}
	}
}

func (m *opModel) borrowed(h Handle) bool {
	_, r := m.rented[h]
	return r || m.viewed[h] > 0
}

// run performs operations until the source runs out (or Purge ends the
// Shuffler), then returns every borrow and compares every entry.
// endAll ends every rent and view the model holds, keeping what the
// rented entries hold now as their expected values.
func (m *opModel) endAll() {
	for _, h := range byHandle(m.rented) {
		m.values[h] = bytes.Clone(m.rented[h])
		m.endRent(h)
	}
	for _, h := range byHandle(m.viewed) {
		for range m.viewed[h] {
			m.endView(h)
		}
	}
	m.settle()
}

func (m *opModel) run() {
	m.t.Helper()
	for m.step = 0; !m.ended && !m.purged; m.step++ {
		op := m.byte() % opCount
		m.op(op)
		m.settle()
		m.traceStep(op)
		if err := m.s.check(); err != nil {
			m.fatalf("after op %d: %v", m.last, err)
		}
		if !m.purged {
			m.spotCheck()
		}
	}
	if m.purged {
		return
	}
	m.endAll()
	for _, h := range byHandle(m.expired) {
		if m.s.Valid(h) {
			m.fatalf("expired handle %v still valid", h)
		}
	}
	for _, h := range byHandle(m.values) {
		if got, want := readAll(m.t, m.s, h), m.values[h]; !bytes.Equal(got, want) {
			m.fatalf("entry %v: got %x, want %x", h, got, want)
		}
	}
	m.traceStep(0xff)
	if st := m.s.Stats(); st.Entries != len(m.values) {
		m.fatalf("Stats.Entries = %d, model has %d", st.Entries, len(m.values))
	}
	if err := m.s.check(); err != nil {
		m.fatalf("at the end: %v", err)
	}
}

// spotCheck compares up to four unborrowed entries with the model, and
// the memory of every view.
func (m *opModel) spotCheck() {
	m.t.Helper()
	for k := 0; k < 4 && len(m.hs) > 0; k++ {
		h := m.hs[(m.step*7+k*13)%len(m.hs)]
		if m.borrowed(h) || m.gone(h) {
			if m.gone(h) && m.s.Valid(h) {
				m.fatalf("handle %v valid after its deadline", h)
			}
			continue
		}
		if got := readAll(m.t, m.s, h); !bytes.Equal(got, m.values[h]) {
			m.fatalf("entry %v differs from the model", h)
		}
	}
	for h, b := range m.views {
		if !bytes.Equal(b, m.values[h]) {
			m.fatalf("view of %v differs from the model", h)
		}
	}
}

func (m *opModel) op(op byte) {
	m.t.Helper()
	s := m.s
	switch op {
	case 0, 1: // alloc, of bytes or of 8-byte words
		n := 1 + int(m.byte())
		var h Handle
		var err error
		if op == 1 && n%8 == 0 {
			h, err = Alloc[uint64](s, n/8)
			m.note("Alloc", err)
		} else {
			h, err = Alloc[byte](s, n)
			m.note("Alloc", err)
		}
		if err != nil {
			m.fatalf("Alloc(%d): %v", n, err)
		}
		m.alloced(h, n)
	case 2: // rent, or write and return what is rented
		h, ok := m.pick()
		if !ok {
			return
		}
		if b, ok := m.rented[h]; ok {
			v := m.byte()
			for i := range b {
				b[i] = v + byte(i)
			}
			m.values[h] = bytes.Clone(b)
			m.endRent(h)
			return
		}
		b, err := RentSlice[byte](s, h)
		m.note("RentSlice", err)
		switch {
		case m.gone(h):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("Rent of expired: %v", err)
			}
		case m.viewed[h] > 0:
			if !errors.Is(err, ErrBusy) {
				m.fatalf("Rent of viewed: %v", err)
			}
		case err != nil:
			m.fatalf("Rent: %v", err)
		default:
			if !bytes.Equal(b, m.values[h]) {
				m.fatalf("rented %x, want %x", b, m.values[h])
			}
			m.rented[h] = b
		}
	case 3: // view
		h, ok := m.pick()
		if !ok {
			return
		}
		b, err := ViewSlice[byte](s, h)
		m.note("ViewSlice", err)
		switch {
		case m.gone(h):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("View of expired: %v", err)
			}
		case m.rented[h] != nil:
			if !errors.Is(err, ErrBusy) {
				m.fatalf("View of rented: %v", err)
			}
		case err != nil:
			m.fatalf("View: %v", err)
		default:
			m.viewed[h]++
			m.views[h] = b
		}
	case 4: // return a view, or misuse ReturnView
		h, ok := m.pick()
		if !ok {
			return
		}
		if m.viewed[h] > 0 {
			m.endView(h)
			return
		}
		err := s.ReturnView(h)
		m.note("ReturnView", err)
		switch {
		case m.expired[h]:
			if !errors.Is(err, ErrExpired) {
				m.fatalf("ReturnView of expired: %v", err)
			}
		default:
			if !errors.Is(err, ErrNotRented) {
				m.fatalf("ReturnView of an entry not viewed: %v", err)
			}
		}
	case 5: // free
		h, ok := m.pick()
		if !ok {
			return
		}
		err := s.Free(h)
		m.note("Free", err)
		if m.borrowed(h) {
			if !errors.Is(err, ErrBusy) {
				m.fatalf("Free of borrowed: %v", err)
			}
			return
		}
		if err != nil {
			m.fatalf("Free: %v", err)
		}
		m.forget(h)
		if s.Valid(h) {
			m.fatalf("freed handle still valid")
		}
		err = s.Free(h)
		m.note("Free", err)
		if !errors.Is(err, ErrInvalidHandle) {
			m.fatalf("double free: %v", err)
		}
	case 6:
		err := s.Shuffle()
		m.note("Shuffle", err)
		if err != nil {
			m.fatalf("Shuffle: %v", err)
		}
		if err := s.checkNoneDue(m.clock.now()); err != nil {
			m.fatalf("after Shuffle: %v", err)
		}
	case 7: // one background cycle, step by step, as the background shuffler runs it
		ran := s.cycle(context.Background(), nil)
		m.note(fmt.Sprintf("cycle %v", ran), nil)
		if !ran {
			m.fatalf("background cycle stopped")
		}
		if err := s.checkNoneDue(m.clock.now()); err != nil {
			m.fatalf("after a background cycle: %v", err)
		}
	case 8:
		err := s.RotateKey(nil, nil)
		m.note("RotateKey", err)
		if err != nil {
			m.fatalf("RotateKey: %v", err)
		}
	case 9:
		s.SetShuffleOnBorrowReturn(m.byte()%2 == 1)
	case 10: // expire an entry now
		h, ok := m.pick()
		if !ok || m.borrowed(h) || m.gone(h) {
			return
		}
		err := s.SetExpiry(h, time.Unix(0, 1))
		m.note("SetExpiry", err)
		if err != nil {
			m.fatalf("SetExpiry in the past: %v", err)
		}
		m.expire(h)
		if s.Valid(h) {
			m.fatalf("expired handle still valid")
		}
	case 11: // an expiry far ahead, read back, or cleared
		h, ok := m.pick()
		if !ok || m.gone(h) {
			return
		}
		at := time.Time{}
		delete(m.deadline, h)
		if m.byte()%2 == 0 {
			at = m.clock.time().Add(time.Hour)
			m.deadline[h] = at.UnixNano()
		}
		err := s.SetExpiry(h, at)
		m.note("SetExpiry", err)
		if err != nil {
			m.fatalf("SetExpiry: %v", err)
		}
		got, err := s.Expiry(h)
		m.note("Expiry", err)
		if err != nil || !got.Equal(at) {
			m.fatalf("Expiry: %v, %v; want %v", got, err, at)
		}
	case 12: // misuse: Return of what is not rented
		h, ok := m.pick()
		if !ok || m.rented[h] != nil {
			return
		}
		err := s.Return(h)
		m.note("Return", err)
		want := ErrNotRented
		if m.expired[h] {
			want = ErrExpired
		}
		if !errors.Is(err, want) {
			m.fatalf("Return of an entry not rented: %v, want %v", err, want)
		}
	case 13: // a typed rent wider than the entry
		h, ok := m.pick()
		if !ok || m.borrowed(h) || m.gone(h) {
			return
		}
		_, err := Rent[[64]byte](s, h)
		m.note("Rent[[64]byte]", err)
		if len(m.values[h]) < 64 {
			if !errors.Is(err, ErrTypeMismatch) {
				m.fatalf("Rent of a wider type: %v", err)
			}
			return
		}
		if err != nil {
			m.fatalf("Rent[[64]byte]: %v", err)
		}
		err = s.Return(h)
		m.note("Return", err)
		if err != nil {
			m.fatalf("Return: %v", err)
		}
	case 14: // a larger entry, so arenas of several sizes come and go
		n := 1 + int(m.byte())*64
		h, err := Alloc[byte](s, n)
		m.note("Alloc", err)
		if err != nil {
			m.fatalf("Alloc(%d): %v", n, err)
		}
		m.alloced(h, n)
	case 15: // Purge, rarely: it ends the Shuffler. Two bytes decide, so
		// that a random stream seldom ends before it has done much.
		for range 2 {
			if m.byte() != 0xff {
				return
			}
		}
		err := s.Purge()
		m.note("Purge", err)
		if err != nil {
			m.fatalf("Purge: %v", err)
		}
		m.purged = true
		if _, err := Alloc[byte](s, 8); !errors.Is(err, ErrClosed) {
			m.fatalf("Alloc after Purge: %v", err)
		}
		for _, b := range m.rented {
			if !allZero(b) {
				m.fatalf("a rented entry was not wiped by Purge")
			}
		}
	case 16: // time passes
		m.clock.advance(time.Duration(m.byte()%16) * time.Millisecond)
	case 17: // an expiry a little ahead on the clock, or now
		h, ok := m.pick()
		if !ok {
			return
		}
		at := m.clock.time().Add(time.Duration(m.byte()%32) * time.Millisecond)
		err := s.SetExpiry(h, at)
		m.note("SetExpiry", err)
		if m.gone(h) {
			if !errors.Is(err, ErrExpired) {
				m.fatalf("SetExpiry of an expired entry: %v", err)
			}
			return
		}
		if err != nil {
			m.fatalf("SetExpiry: %v", err)
		}
		m.deadline[h] = at.UnixNano()
		got, err := s.Expiry(h)
		m.note("Expiry", err)
		switch {
		case m.due(h):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("Expiry of an entry due now: %v, %v", got, err)
			}
		case err != nil || !got.Equal(at):
			m.fatalf("Expiry: %v, %v; want %v", got, err, at)
		}
	case 18: // an entry made from a copy, which wipes the source
		n := 1 + int(m.byte())
		v := m.byte()
		src := make([]byte, n)
		for i := range src {
			src[i] = v + byte(i)
		}
		want := bytes.Clone(src)
		h, err := CopyFrom(s, src)
		m.note("CopyFrom", err)
		if err != nil {
			m.fatalf("CopyFrom(%d): %v", n, err)
		}
		if !allZero(src) {
			m.fatalf("CopyFrom left its source as it was")
		}
		m.alloced(h, n)
		m.values[h] = want
	case 19: // a clone, of a viewed entry too
		h, ok := m.pick()
		if !ok {
			return
		}
		c, err := Clone(s, h)
		m.note("Clone", err)
		switch {
		case m.gone(h):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("Clone of expired: %v", err)
			}
		case m.rented[h] != nil:
			if !errors.Is(err, ErrBusy) {
				m.fatalf("Clone of rented: %v", err)
			}
		case err != nil:
			m.fatalf("Clone: %v", err)
		default:
			m.alloced(c, len(m.values[h]))
			m.values[c] = bytes.Clone(m.values[h])
		}
	case 20: // write through a borrow
		h, ok := m.pick()
		if !ok {
			return
		}
		v := m.byte()
		err := BorrowSlice(s, h, func(b []byte) error {
			for i := range b {
				b[i] = v ^ byte(i)
			}
			return nil
		})
		m.note("BorrowSlice", err)
		switch {
		case m.gone(h):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("BorrowSlice of expired: %v", err)
			}
		case m.borrowed(h):
			if !errors.Is(err, ErrBusy) {
				m.fatalf("BorrowSlice of borrowed: %v", err)
			}
		case err != nil:
			m.fatalf("BorrowSlice: %v", err)
		default:
			for i := range m.values[h] {
				m.values[h][i] = v ^ byte(i)
			}
		}
	case 21: // compare in constant time, with the model and with another entry
		h, ok := m.pick()
		if !ok {
			return
		}
		eq, err := Equal(s, h, m.values[h])
		m.note("Equal", err)
		switch {
		case m.gone(h):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("Equal of expired: %v", err)
			}
		case m.rented[h] != nil:
			if !errors.Is(err, ErrBusy) {
				m.fatalf("Equal of rented: %v", err)
			}
		case err != nil || !eq:
			m.fatalf("Equal with the model's value: %v, %v", eq, err)
		}
		h2, _ := m.pick()
		eq, err = EqualEntries(s, h, h2)
		m.note("EqualEntries", err)
		switch {
		case m.gone(h) || m.gone(h2):
			if !errors.Is(err, ErrExpired) {
				m.fatalf("EqualEntries of expired: %v", err)
			}
		case h != h2 && len(m.values[h]) != len(m.values[h2]):
			if eq || err != nil {
				m.fatalf("EqualEntries of different sizes: %v, %v", eq, err)
			}
		case m.rented[h] != nil || m.rented[h2] != nil:
			if !errors.Is(err, ErrBusy) {
				m.fatalf("EqualEntries of rented: %v", err)
			}
		case err != nil || eq != bytes.Equal(m.values[h], m.values[h2]):
			m.fatalf("EqualEntries: %v, %v; the model's values equal: %v", eq, err, bytes.Equal(m.values[h], m.values[h2]))
		}
	}
}

// opCount is the number of operations op knows.
const opCount = 22

// endRent returns a rented entry: a Return after its deadline wipes it
// and says so. Whether the wipe happened is the checker's to see: the
// rented memory may be unmapped with its arena by now.
func (m *opModel) endRent(h Handle) {
	m.t.Helper()
	err := m.s.Return(h)
	m.note("Return", err)
	delete(m.rented, h)
	if m.due(h) {
		if !errors.Is(err, ErrExpired) {
			m.fatalf("Return after the deadline: %v", err)
		}
		m.expire(h)
		return
	}
	if err != nil {
		m.fatalf("Return: %v", err)
	}
}

// endView returns one view: after the deadline every ReturnView says so,
// and the last one wipes the entry.
func (m *opModel) endView(h Handle) {
	m.t.Helper()
	err := m.s.ReturnView(h)
	m.note("ReturnView", err)
	due := m.due(h)
	if due != errors.Is(err, ErrExpired) || (!due && err != nil) {
		m.fatalf("ReturnView (deadline passed: %v): %v", due, err)
	}
	if m.viewed[h]--; m.viewed[h] > 0 {
		return
	}
	delete(m.viewed, h)
	delete(m.views, h)
	if due {
		m.expire(h)
	}
}

// allocPattern allocates an entry of n bytes holding byte(seed+j) at each
// j and records it in m.
func allocPattern(t testing.TB, s *Shuffler, m model, n, seed int) Handle {
	t.Helper()
	h, err := Alloc[byte](s, n)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	for j := range b {
		b[j] = byte(seed + j)
	}
	m[h] = bytes.Clone(b)
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	return h
}

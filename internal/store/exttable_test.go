package store

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// fibonacciInverse is the inverse of fibonacci modulo 2^64: the key whose
// hash is h is h * fibonacciInverse.
var fibonacciInverse = func() uint64 {
	x := uint64(fibonacci) // Newton: each step doubles the bits that are right
	for range 6 {
		x *= 2 - fibonacci*x
	}
	return x
}()

// twin returns a key other than k whose hash keeps the same first 33
// bits, which only the caller of an extTable can tell from k.
func twin(k uint64, d uint64) uint64 {
	h := hashKey(k)
	return (h&hashKept | (h+d)&valMask) * fibonacciInverse
}

func TestTwinKeysShareTheirHash(t *testing.T) {
	k := key(3, 4096)
	for d := uint64(1); d < 5; d++ {
		w := twin(k, d)
		if w == k || hashKey(w)&hashKept != hashKey(k)&hashKept {
			t.Fatalf("twin %#x of %#x: hashes %#x and %#x", w, k, hashKey(w), hashKey(k))
		}
	}
}

// tableModel runs operations on an extTable and on a Go map side by side.
// Values are indexes into keys, so that a lookup tells its key's value
// from a twin's as FreeSpace does by the record.
type tableModel struct {
	tab  extTable
	m    map[uint64]int32
	keys []uint64       // by value
	live []uint64       // the keys in m, in no order
	at   map[uint64]int // index in live
}

func newTableModel() *tableModel {
	return &tableModel{m: map[uint64]int32{}, at: map[uint64]int{}}
}

// find looks k up as FreeSpace does: the first value of k's hash whose key
// is k.
func (m *tableModel) find(k uint64) int32 {
	for i := 0; ; i++ {
		v := m.tab.get(k, i)
		if v < 0 || m.keys[v] == k {
			return v
		}
	}
}

// Operations, chosen by op%opCount; arg picks the key.
const (
	opPut       = iota // a new key near others, in arenas of 16-byte offsets as FreeSpace's are
	opPutTwin          // a new key whose hash begins as a stored one's
	opPutWild          // a new key anywhere
	opDel              // a stored key
	opDelAbsent        // a value never stored, under a stored key or another
	opGet              // a stored key, a twin of one, or a key near them
	opCount
)

func (m *tableModel) step(op byte, arg uint32) error {
	pick := func() (uint64, bool) {
		if len(m.live) == 0 {
			return 0, false
		}
		return m.live[int(arg>>8)%len(m.live)], true
	}
	var k uint64
	switch op % opCount {
	case opPut, opPutTwin, opPutWild:
		switch op % opCount {
		case opPut:
			k = key(arg>>30, (arg&0xffff+uint32(len(m.keys)))*16)
		case opPutTwin:
			s, ok := pick()
			if !ok {
				return nil
			}
			k = twin(s, uint64(arg&7+1))
		default:
			k = uint64(arg)*0x2545F4914F6CDD1D ^ uint64(arg)<<40
		}
		if _, ok := m.m[k]; ok {
			return nil
		}
		v := int32(len(m.keys))
		m.keys = append(m.keys, k)
		m.tab.put(k, v)
		m.m[k] = v
		m.at[k] = len(m.live)
		m.live = append(m.live, k)
	case opDel:
		k, ok := pick()
		if !ok {
			return nil
		}
		if !m.tab.del(k, m.m[k]) {
			return fmt.Errorf("del %#x = %d: not found", k, m.m[k])
		}
		i := m.at[k]
		last := m.live[len(m.live)-1]
		m.live[i], m.at[last] = last, i
		m.live = m.live[:len(m.live)-1]
		delete(m.at, k)
		delete(m.m, k)
	case opDelAbsent:
		k, ok := pick()
		if !ok || arg&1 != 0 {
			k = key(arg>>28, arg*16)
		}
		v := int32(len(m.keys)) // never stored, under any key
		if m.tab.del(k, v) {
			return fmt.Errorf("del %#x = %d: deleted a value not stored", k, v)
		}
	case opGet:
		k, ok := pick()
		switch {
		case !ok:
			k = uint64(arg)
		case arg&3 == 1:
			k = twin(k, uint64(arg>>2&7+1))
		case arg&3 == 2:
			k += 16
		}
		want, ok := m.m[k]
		if !ok {
			want = -1
		}
		if got := m.find(k); got != want {
			return fmt.Errorf("get %#x = %d, want %d", k, got, want)
		}
	}
	if m.tab.Len() != len(m.m) {
		return fmt.Errorf("%d values stored, want %d", m.tab.Len(), len(m.m))
	}
	return nil
}

// verify looks up every stored key and checks the table's invariants.
func (m *tableModel) verify() error {
	if err := m.tab.check(); err != nil {
		return err
	}
	for k, v := range m.m {
		if got := m.find(k); got != v {
			return fmt.Errorf("get %#x = %d, want %d", k, got, v)
		}
	}
	return nil
}

// runOps runs the operations ops encodes, 5 bytes each (an op and its
// argument), checking the whole table after each while it is small, then
// after every 64th (each check looks at every slot and key), and at the
// end.
func runOps(ops []byte) error {
	m := newTableModel()
	for i := 0; i+5 <= len(ops); i += 5 {
		if err := m.step(ops[i], binary.LittleEndian.Uint32(ops[i+1:])); err != nil {
			return fmt.Errorf("op %d: %w", i/5, err)
		}
		if len(m.m) > 64 && i/5%64 != 0 {
			continue
		}
		if err := m.verify(); err != nil {
			return fmt.Errorf("op %d: %w", i/5, err)
		}
	}
	if err := m.verify(); err != nil {
		return fmt.Errorf("at the end: %w", err)
	}
	return nil
}

// TestExtTableModel grows a table to enough keys for its directory to
// double several times, with twins among them, empties it down to ten
// keys and grows it again, comparing it with a map all the way; the
// emptied table is one segment of a few slots.
func TestExtTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := newTableModel()
	phases := []struct {
		target int
		puts   int // in 8: the share of puts among the steps
	}{{50000, 6}, {10, 2}, {20000, 6}, {0, 2}}
	steps := 0
	for _, ph := range phases {
		for len(m.m) != ph.target {
			op := byte(opGet)
			if r := rng.IntN(8); r < ph.puts {
				op = []byte{opPut, opPut, opPut, opPutTwin, opPutWild}[rng.IntN(5)]
			} else if r < 7 {
				op = opDel
			} else if rng.IntN(2) == 0 {
				op = opDelAbsent
			}
			if ph.target > len(m.m) && op == opDel || ph.target < len(m.m) && op <= opPutWild {
				continue
			}
			if err := m.step(op, rng.Uint32()); err != nil {
				t.Fatalf("step %d: %v", steps, err)
			}
			steps++
			if len(m.m) < 2000 || steps%4999 == 0 {
				if err := m.tab.check(); err != nil {
					t.Fatalf("step %d, %d keys: %v", steps, len(m.m), err)
				}
			}
		}
		if err := m.verify(); err != nil {
			t.Fatalf("after %d steps, %d keys: %v", steps, len(m.m), err)
		}
		t.Logf("%d keys: directory depth %d, %d slots", len(m.m), m.tab.depth, m.tab.slotCount())
		if ph.target == 50000 && m.tab.depth < 5 {
			t.Fatalf("directory of depth %d for %d keys", m.tab.depth, len(m.m))
		}
		if ph.target <= 10 && (len(m.tab.dir) != 1 || m.tab.slotCount() > 4*minSlots) {
			t.Fatalf("%d keys left in %d segments of %d slots", len(m.m), len(m.tab.dir), m.tab.slotCount())
		}
	}
}

// TestExtTableTwins stores keys whose hashes share the bits a slot keeps:
// each is found, and deleted, by its own value.
func TestExtTableTwins(t *testing.T) {
	m := newTableModel()
	base := key(1, 4096)
	m.tab.put(base, 0)
	m.keys = append(m.keys, base)
	m.m[base] = 0
	for d := uint64(1); d <= 40; d++ {
		k := twin(base, d)
		m.tab.put(k, int32(d))
		m.keys = append(m.keys, k)
		m.m[k] = int32(d)
	}
	if err := m.verify(); err != nil {
		t.Fatal(err)
	}
	for d := uint64(0); d <= 40; d += 3 {
		k := m.keys[d]
		if !m.tab.del(k, int32(d)) {
			t.Fatalf("twin %d not deleted", d)
		}
		delete(m.m, k)
		if err := m.verify(); err != nil {
			t.Fatalf("after deleting twin %d: %v", d, err)
		}
	}
	if v := m.find(twin(base, 100)); v != -1 {
		t.Fatalf("a twin never stored found as %d", v)
	}
}

// TestExtTableCheckFindsCorruption: the checker is what the randomized
// tests lean on, so it must see a misplaced slot, a wrong count and a
// segment left unmerged.
func TestExtTableCheckFindsCorruption(t *testing.T) {
	fill := func(n int) *extTable {
		var tab extTable
		for i := range n {
			tab.put(key(0, uint32(i)*16), int32(i))
		}
		if err := tab.check(); err != nil {
			t.Fatal(err)
		}
		return &tab
	}
	tab := fill(5)
	s := tab.dir[0]
	for i, x := range s.slots { // move a slot one before its home
		if x != 0 && s.home(x) == i {
			j := (i - 1) & (len(s.slots) - 1)
			if s.slots[j] == 0 {
				s.slots[i], s.slots[j] = 0, x
				break
			}
		}
	}
	if err := tab.check(); err == nil {
		t.Error("a slot before its home passed the check")
	}
	tab = fill(5)
	tab.n++
	if err := tab.check(); err == nil {
		t.Error("a wrong count passed the check")
	}
	tab = fill(3000)
	var s0, s1 *extSeg // buddies: empty both behind the table's back
	for i, s := range tab.dir {
		span := 1 << (tab.depth - s.depth)
		if b := tab.dir[i^span]; s.depth > 0 && b.depth == s.depth {
			s0, s1 = s, b
			break
		}
	}
	if s0 == nil {
		t.Fatalf("3000 keys in segments with no buddies: directory of %d", len(tab.dir))
	}
	for _, s := range []*extSeg{s0, s1} {
		clear(s.slots)
		tab.n -= s.n
		s.n = 0
	}
	if err := tab.check(); err == nil {
		t.Error("two empty buddies passed the check")
	}
}

// TestExtTableGivesBack: after a million keys, ten keys take 32 slots.
func TestExtTableGivesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	var tab extTable
	const n = 1000000
	for i := range n {
		tab.put(key(uint32(i>>14), uint32(i)*64), int32(i))
	}
	big := tab.slotCount()
	for i := 10; i < n; i++ {
		if !tab.del(key(uint32(i>>14), uint32(i)*64), int32(i)) {
			t.Fatalf("key %d missing", i)
		}
	}
	if err := tab.check(); err != nil {
		t.Fatal(err)
	}
	if tab.slotCount() > 32 || len(tab.dir) != 1 {
		t.Fatalf("10 keys in %d slots, directory of %d (%d slots at %d keys)", tab.slotCount(), len(tab.dir), big, n)
	}
	if big*3 > n*8 {
		t.Fatalf("%d slots for %d keys", big, n)
	}
}

// FuzzExtTable runs the model's operations from the input, 5 bytes each.
func FuzzExtTable(f *testing.F) {
	f.Add([]byte{opPut, 1, 2, 3, 4, opPutTwin, 0, 0, 0, 0, opGet, 1, 0, 0, 0, opDel, 0, 0, 0, 0, opGet, 0, 0, 0, 0})
	f.Add([]byte{opPutWild, 9, 9, 9, 9, opPutTwin, 3, 0, 0, 0, opPutTwin, 5, 1, 0, 0, opDelAbsent, 1, 0, 0, 0, opDel, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if err := runOps(ops); err != nil {
			t.Fatal(err)
		}
	})
}

// TestExtTableFuzzCorpus fails when the committed corpus goes missing, so
// that FuzzExtTable never runs on its two seeds alone.
func TestExtTableFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzExtTable", "*"))
	if err != nil || len(files) < 3 {
		t.Fatalf("FuzzExtTable corpus has %d files (%v), want at least 3", len(files), err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil || len(b) < 100 {
			t.Fatalf("%s: %d bytes (%v)", name, len(b), err)
		}
	}
}

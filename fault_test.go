package memshuffle

import (
	"bytes"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// failNth makes the n-th call (from 0) of op fail, and reports through the
// returned counter how many calls of op there were.
func failNth(t *testing.T, op osmem.Op, n int64) *atomic.Int64 {
	var calls atomic.Int64
	osmem.SetFault(func(o osmem.Op) error {
		if o != op {
			return nil
		}
		if calls.Add(1)-1 == n {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	return &calls
}

// TestFaults makes each operating-system call of a workload fail in turn
// and checks that the failure surfaces as a typed error while the Shuffler
// stays consistent and every entry keeps its value.
func TestFaults(t *testing.T) {
	cases := []struct {
		op   osmem.Op
		mode LockMode
		want error
	}{
		{osmem.OpMap, LockBestEffort, ErrOutOfMemory},
		{osmem.OpProtect, LockBestEffort, ErrOutOfMemory},
		{osmem.OpLock, LockStrict, ErrLockFailed},
		{osmem.OpLock, LockBestEffort, nil}, // counted in Stats, not an error
		{osmem.OpAdvise, LockBestEffort, nil},
		{osmem.OpUnmap, LockBestEffort, osmem.ErrInjected}, // Shuffle's error, the region retried later
	}
	for _, c := range cases {
		t.Run(c.op.String()+"/"+[]string{"besteffort", "strict", "none"}[c.mode], func(t *testing.T) {
			for n := int64(0); ; n++ {
				s := newOrSkip(t, WithShards(2), WithArenaSize(4096), WithLockMode(c.mode))
				m := model{}
				for i := range 40 {
					allocPattern(t, s, m, 100+i, i)
				}
				calls := failNth(t, c.op, n)
				var errs []error
				keep := func(err error) {
					if err != nil {
						errs = append(errs, err)
					}
				}
				for i := range 60 {
					h, err := Alloc[byte](s, 1000+i)
					keep(err)
					if err == nil {
						m[h] = make([]byte, 1000+i)
					}
				}
				keep(s.Shuffle())
				s.SetShuffleOnBorrowReturn(true)
				for h := range m {
					if _, err := RentSlice[byte](s, h); err != nil {
						t.Fatal(err)
					}
					keep(s.Return(h))
				}
				keep(s.Shuffle())
				total := calls.Load()
				osmem.SetFault(nil)
				for _, err := range errs {
					if c.want == nil || !errors.Is(err, c.want) {
						t.Fatalf("call %d of %v failed: got %v, want %v", n, c.op, err, c.want)
					}
				}
				if err := s.checkInvariants(); err != nil {
					t.Fatalf("call %d of %v failed: %v", n, c.op, err)
				}
				verifyModel(t, s, m)
				if c.op == osmem.OpLock && c.mode == LockBestEffort && n < total && s.Stats().LockFailures == 0 {
					t.Fatal("lock failure not counted")
				}
				// LockStrict never runs on memory it could not lock (it
				// retries or fails): a Map that took the refusal as best
				// effort passed every check above.
				if u := s.Stats().UnlockedBytes; c.mode == LockStrict && u != 0 {
					t.Fatalf("call %d of %v failed: %d bytes unlocked under LockStrict", n, c.op, u)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if n >= total {
					t.Logf("%v: failed each of %d calls in turn", c.op, total)
					if n == 0 {
						if c.op == osmem.OpAdvise && runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "dragonfly" {
							t.Skipf("no %v call on %s", c.op, runtime.GOOS)
						}
						t.Fatalf("workload made no %v call", c.op)
					}
					break
				}
			}
		})
	}
}

// TestShuffleUniform covers the shuffle layout for shards whose entries all
// have one size, with rented entries staying put and mapping failing at
// every call in turn.
func TestShuffleUniform(t *testing.T) {
	for n := int64(-1); n < 6; n++ {
		s := newTest(t, WithShards(2), WithArenaSize(4096))
		m := model{}
		var rented []Handle
		for i := range 3000 {
			h, err := Alloc[uint64](s, 4)
			if err != nil {
				t.Fatal(err)
			}
			v, _ := RentSlice[uint64](s, h)
			v[0], v[3] = uint64(i), ^uint64(i)
			b := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 32)
			m[h] = bytes.Clone(b)
			if i%500 == 0 {
				rented = append(rented, h)
				continue
			}
			s.Return(h)
		}
		addrs := map[Handle]uintptr{}
		for _, h := range rented {
			addrs[h] = uintptr(unsafe.Pointer(unsafe.SliceData(memOf(s, h))))
		}
		if n >= 0 {
			failNth(t, osmem.OpMap, n)
		}
		for range 3 {
			err := s.Shuffle()
			if n < 0 && err != nil {
				t.Fatal(err)
			}
			if err != nil && !errors.Is(err, ErrOutOfMemory) {
				t.Fatalf("Shuffle: %v", err)
			}
			mustCheck(t, s)
		}
		osmem.SetFault(nil)
		for _, h := range rented {
			if uintptr(unsafe.Pointer(unsafe.SliceData(memOf(s, h)))) != addrs[h] {
				t.Fatal("rented entry moved")
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
		}
		verifyModel(t, s, m)
		if n < 0 && s.Stats().BytesMoved < 3*2900*32 {
			t.Fatalf("moved only %d bytes", s.Stats().BytesMoved)
		}
	}
}

package memshuffle

import (
	"testing"
	"time"
)

// TestRotationBatchSlotTrimmed: a CTR rotation plans a
// batch under the shard lock, lets go of it to compute the keystream, and
// applies the batch under the lock again. Entries freed in between (any
// goroutine's Free; here from afterRotationHold, which runs exactly in that
// window) can let the slot table drop the chunk the planned slots are in,
// and applyBatch then indexes the dropped chunk: a panic, which leaves the
// shard lock held (rotateHold does not defer its unlock), and which on the
// goroutine of WithKeyRotation ends the process.
func TestRotationBatchSlotTrimmed(t *testing.T) {
	s, err := New(WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	var first, second []Handle
	for range 4096 {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, h)
	}
	for range 100 {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		second = append(second, h)
	}
	for _, h := range first {
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
	}
	freed := false
	afterRotationHold = func() {
		// Runs with no shard lock held, between the plan and the apply.
		if p := s.rotator.left.plan; !freed && len(p) > 0 && p[0].i >= 4096 {
			freed = true
			for _, h := range second {
				if err := s.Free(h); err != nil {
					t.Error(err)
				}
			}
		}
	}
	defer func() { afterRotationHold = nil }()
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("RotateKey panicked after a concurrent Free: %v", p)
			}
		}()
		if err := s.RotateKey(nil, nil); err != nil {
			t.Log(err)
		}
	}()
	if !freed {
		t.Fatal("no batch planned a slot of chunk 1: the test missed its window")
	}
	if !s.shards[0].mu.TryLock() {
		t.Error("shard lock left held after the panic: every later call on the shard, Close included, blocks for ever")
		return // s is leaked: Close would block
	}
	s.shards[0].mu.Unlock()
	s.Close()
}

// TestScheduledRotationWithChurn: the same without any hook, as a
// program meets it: WithKeyRotation rotates on its own goroutine while the
// program frees entries past the table's first chunk. Run in a child
// process, since the panic on the rotation goroutine ends the process.
func TestScheduledRotationWithChurn(t *testing.T) {
	inChild(t, func(t *testing.T) {
		s, err := New(WithShards(1), WithKeyRotation(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		deadline := time.Now().Add(3 * time.Second) // it died within 0.07-0.74 s
		for round := 0; time.Now().Before(deadline); round++ {
			var first, second []Handle
			for range 4096 {
				h, _ := Alloc[byte](s, 16)
				first = append(first, h)
			}
			for range 250 {
				h, _ := Alloc[byte](s, 256)
				second = append(second, h)
			}
			for _, h := range first {
				s.Free(h)
			}
			time.Sleep(time.Duration(round%5) * 100 * time.Microsecond)
			for _, h := range second {
				s.Free(h)
			}
		}
	})
}

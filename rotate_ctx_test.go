package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestRotationCanceledMidway stops a rotation, as Close and Purge stop a
// scheduled one, after its first, fourth, seventh or tenth hold of a shard
// lock: it reports ErrRotationIncomplete wrapping the context's error,
// every entry stays readable under one of the two keys, and the next
// RotateKey finishes that rotation before it does its own.
func TestRotationCanceledMidway(t *testing.T) {
	for _, c := range allCiphers {
		for _, stop := range shortOr([]int{1, 4, 7, 10}, []int{1, 7}) {
			for _, readBetween := range []bool{true, false} {
				t.Run(fmt.Sprintf("%v/stop=%d/read=%v", c, stop, readBetween), func(t *testing.T) {
					rotationCanceledMidway(t, c, stop, readBetween)
				})
			}
		}
	}
}

// rotationCanceledMidway is TestRotationCanceledMidway for one cipher,
// stopping after hold stop, with every entry read back between the two
// rotations or not. A read rents and returns each entry, which encrypts
// it under the new key: without one, the second rotation alone must move
// the entries the first left under the old key before it wipes that key.
// A resume that took every shard as done lost them, and only the run
// without the read shows it.
func rotationCanceledMidway(t *testing.T, c Cipher, stop int, readBetween bool) {
	s := newTest(t, WithCipher(c), WithShards(2))
	m := model{}
	for i := range 200 {
		src := bytes.Repeat([]byte{byte(i)}, 100+i*700)
		h, err := CopyFrom(s, bytes.Clone(src))
		if err != nil {
			t.Fatal(err)
		}
		m[h] = src
	}
	ctx, cancel := context.WithCancel(context.Background())
	holds := 0
	afterRotationHold = func() {
		if holds++; holds == stop {
			cancel()
		}
	}
	t.Cleanup(func() { afterRotationHold = nil })
	err := s.rotateKey(ctx, nil, nil, nil)
	afterRotationHold = nil
	if !errors.Is(err, ErrRotationIncomplete) || !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, stopped after hold %d: %v", c, stop, err)
	}
	if readBetween {
		verifyModel(t, s, m)
	}
	mustCheck(t, s)
	if err := s.RotateKey(nil, nil); err != nil {
		t.Fatal(err)
	}
	verifyModel(t, s, m)
	mustCheck(t, s)
	for i := range s.shards {
		if s.shards[i].rot.prev != nil {
			t.Fatalf("%v: shard %d still rotating", c, i)
		}
	}
	if got := s.Stats().KeyRotations; got != 2 {
		t.Fatalf("%v: KeyRotations %d, want 2", c, got)
	}
}

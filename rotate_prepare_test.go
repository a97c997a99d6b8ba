package memshuffle

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestRotatePrepareCountsBorrowed: RotateKey's doc says the
// memory a rotation needs is acquired before any shard switches, and that
// only a shard gaining an entry larger than any it held while the
// rotation prepared can make it stop part-way. prepareRekey sizes the
// backup buffer from live entries only: an entry rented while it runs and
// returned before the switch (here from the beforeRotationSwitch hook,
// standing for another goroutine) is not counted, and the rotation stops
// part-way with ErrRotationIncomplete at the memlock limit, though the
// shard gained nothing. Run as nobody with ulimit -l 8192.
func TestRotatePrepareCountsBorrowed(t *testing.T) {
	lim := osmem.LockLimit()
	if lim < 0 || lim > 64<<20 || os.Geteuid() == 0 {
		t.Skip("run as nobody with ulimit -l 8192")
	}
	needLockRoom(t, 8<<20)
	s := newTest(t, WithCipher(AES256GCM), WithLockMode(LockStrict), WithShards(1))
	big, err := Alloc[byte](s, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xa5}, 1<<20)
	if err := BorrowSlice(s, big, func(b []byte) error { copy(b, want); return nil }); err != nil {
		t.Fatal(err)
	}
	// Fill the memlock limit with small entries.
	n := 0
	for ; n < 1<<20; n++ {
		if _, err := Alloc[byte](s, 100); err != nil {
			if !errors.Is(err, ErrLockFailed) {
				t.Fatal(err)
			}
			break
		}
	}
	// Rent the big entry at the limit: its open borrows unlocked room,
	// and the shard keeps no backup buffer.
	if _, err := RentSlice[byte](s, big); err != nil {
		t.Fatal(err)
	}
	returned := false
	beforeRotationSwitch = func() {
		returned = true
		// Prepared; the rented entry comes back before the switch.
		if err := s.Return(big); err != nil {
			t.Errorf("Return: %v", err)
		}
	}
	t.Cleanup(func() { beforeRotationSwitch = nil })
	err = s.RotateKey(nil, nil)
	beforeRotationSwitch = nil
	// Refused up front (ErrLockFailed, the Shuffler as it was) is what
	// the doc promises here; stopping part-way is not.
	if errors.Is(err, ErrRotationIncomplete) {
		t.Errorf("RotateKey stopped part-way though no shard gained an entry: %v", err)
	}
	t.Logf("RotateKey: %v", err)
	if !returned {
		s.Return(big) // refused before the switch
	}
	got, err := RentSlice[byte](s, big)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("big entry: %v", err)
	}
	s.Return(big)
}

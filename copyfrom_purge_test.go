package memshuffle

import (
	"testing"
)

// TestCopyFromRentedSourcePurged: CopyFrom from a slice rented from the
// same Shuffler, racing Purge, never writes the source back into the
// purged entry when it fails: what Purge wiped stays wiped.
func TestCopyFromRentedSourcePurged(t *testing.T) {
	resurrected := 0
	for round := range 2000 {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		src, err := RentSlice[byte](s, h)
		if err != nil {
			t.Fatal(err)
		}
		for i := range src {
			src[i] = 0xa5
		}
		done := make(chan struct{})
		go func() {
			for range round % 10 * 100 {
			}
			s.Purge()
			close(done)
		}()
		_, err = CopyFrom(s, src)
		<-done
		if err != nil && !keyIsZero(src) {
			resurrected++
		}
		s.Close()
	}
	if resurrected != 0 {
		t.Errorf("%d of 2000 failed copies wrote the source back into the purged entry", resurrected)
	}
}

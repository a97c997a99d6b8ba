package memshuffle

import "testing"

// TestHandleStringOwner: the first entries of two Shufflers have equal
// shard, slot and generation, so only the owner can tell them apart in
// print, as it does in comparisons.
func TestHandleStringOwner(t *testing.T) {
	a, b := newTest(t, WithShards(1)), newTest(t, WithShards(1))
	ha, err := Create[uint64](a)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := Create[uint64](b)
	if err != nil {
		t.Fatal(err)
	}
	if ha == hb {
		t.Fatal("handles of two Shufflers compare equal")
	}
	if ha.String() == hb.String() {
		t.Fatalf("handles of two Shufflers print the same: %v", ha)
	}
}

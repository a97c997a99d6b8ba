package memshuffle_test

import (
	"fmt"
	"log"
	"time"

	"github.com/memshuffle/memshuffle"
)

// Rekey on a schedule, as memguard does every 500 ms: entries keep their
// values while the key under them changes.
func ExampleWithKeyRotation() {
	s, err := memshuffle.New(memshuffle.WithKeyRotation(10 * time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // stops the rotations

	h, err := memshuffle.CopyFrom(s, []byte("api-token-1234"))
	if err != nil {
		log.Fatal(err)
	}
	for s.Stats().KeyRotations < 3 {
		time.Sleep(time.Millisecond)
	}
	err = memshuffle.BorrowSlice(s, h, func(b []byte) error {
		fmt.Printf("%s after at least 3 rotations\n", b)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: api-token-1234 after at least 3 rotations
}

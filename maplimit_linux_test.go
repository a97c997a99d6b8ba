package memshuffle

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "maplimit" {
		os.Exit(mapLimitChild())
	}
}

// TestMappingsRunOut: a program that makes Shufflers until the system's
// limit on a process's memory mappings (vm.max_map_count) gets an error
// matching ErrOutOfMemory from New or CopyFrom, keeps what it made, and
// goes on running: its heap still grows and its entries still read back.
// The Shufflers used to take every mapping there was (about 16,000 of
// them with one entry each, 4 mappings apiece, at the default limit of
// 65530), and the runtime's next heap growth ended the process with
// "fatal error: runtime: out of memory".
func TestMappingsRunOut(t *testing.T) {
	if _, budget := osmem.MapsHeld(); budget == 0 {
		t.Skip("no vm.max_map_count here")
	}
	runChildOK(t, "maplimit")
}

// mapLimitChild is the helper process of TestMappingsRunOut.
func mapLimitChild() int {
	// The inbox, mapped once for the process at the first CopyFrom,
	// stays.
	mapInbox()
	held0, budget := osmem.MapsHeld()
	secret := func(i int) []byte { return fmt.Appendf(nil, "secret number %d", i) }
	var ss []*Shuffler
	var hs []Handle
	var refusal error
	for refusal == nil {
		s, err := New(WithShards(1))
		if err != nil {
			refusal = err
			break
		}
		h, err := CopyFrom(s, secret(len(ss)))
		if err != nil {
			s.Close()
			refusal = err
			break
		}
		ss, hs = append(ss, s), append(hs, h)
		if len(ss) > 1<<20 {
			fmt.Println("a million Shufflers and no refusal")
			return 1
		}
	}
	if !errors.Is(refusal, ErrOutOfMemory) || !errors.Is(refusal, osmem.ErrMapLimit) {
		fmt.Printf("refused with %v, want ErrOutOfMemory and the mapping limit\n", refusal)
		return 1
	}
	// The runtime maps more as the heap grows: 1 GiB in 1 MiB pieces.
	var junk [][]byte
	for range 1024 {
		b := make([]byte, 1<<20)
		b[0] = 1
		junk = append(junk, b)
	}
	runtime.GC()
	for _, i := range []int{0, len(ss) / 2, len(ss) - 1} {
		var got string
		err := BorrowViewSlice(ss[i], hs[i], func(b []byte) error {
			got = string(b)
			return nil
		})
		if err != nil || got != string(secret(i)) {
			fmt.Printf("Shuffler %d of %d read back %q, %v\n", i, len(ss), got, err)
			return 1
		}
	}
	for _, s := range ss {
		if err := s.Close(); err != nil {
			fmt.Println("Close:", err)
			return 1
		}
	}
	if held, _ := osmem.MapsHeld(); held != held0 {
		fmt.Printf("after closing every Shuffler %d mappings counted, %d before\n", held, held0)
		return 1
	}
	fmt.Printf("ok %d Shufflers (budget %d mappings), then %v; the heap grew by %d MiB after\n", len(ss), budget, refusal, len(junk))
	return 0
}

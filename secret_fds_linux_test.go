package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "secret-fds" {
		os.Exit(secretFDsChild())
	}
}

// TestSecretMemoryOutOfFDs: a process at its limit of open files
// (RLIMIT_NOFILE) can make no secret memory, since memfd_secret needs a
// file descriptor for every region it maps. With an authenticated cipher,
// an Alloc refused so (ErrOutOfMemory, wrapping EMFILE) gives back the
// shard's idle backup buffer, and a View then needs a new one for its
// copy of the ciphertext. That copy is no secret and plain memory needs
// no descriptor: the entries already held stay readable. Before, every
// Rent and View failed with ErrOutOfMemory until a descriptor was free.
func TestSecretMemoryOutOfFDs(t *testing.T) {
	runChildOK(t, "secret-fds")
}

// secretFDsChild is the helper process of TestSecretMemoryOutOfFDs.
func secretFDsChild() int {
	// The inbox, mapped once for the process at the first CopyFrom,
	// stays.
	mapInbox()
	held0, _ := osmem.MapsHeld()
	s, err := New(WithSecretMemory(), WithCipher(AES256GCM), WithShards(1), WithArenaSize(4096))
	if errors.Is(err, ErrNoSecretMemory) || errors.Is(err, ErrLockFailed) {
		fmt.Println("skip no secret memory here:", err)
		return 0
	}
	if err != nil {
		fmt.Println("New:", err)
		return 1
	}
	want := []byte("an entry made while descriptors were free")
	h, err := CopyFrom(s, bytes.Clone(want))
	if err != nil {
		fmt.Println("CopyFrom:", err)
		return 1
	}
	read := func() error {
		return BorrowViewSlice(s, h, func(b []byte) error {
			if !bytes.Equal(b, want) {
				return fmt.Errorf("entry holds %q", b)
			}
			return nil
		})
	}
	if err := read(); err != nil { // maps the shard's backup buffer
		fmt.Println("first view:", err)
		return 1
	}

	// Use up the descriptors the process may open.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("getrlimit:", err)
		return 1
	}
	low := lim
	low.Cur = min(lim.Cur, 256)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		fmt.Println("setrlimit:", err)
		return 1
	}
	var fds []int
	for {
		fd, err := syscall.Dup(1)
		if err != nil {
			if err != syscall.EMFILE {
				fmt.Println("dup:", err)
				return 1
			}
			break
		}
		fds = append(fds, fd)
	}
	// Larger than any arena so far, so it needs secret memory.
	_, allocErr := Alloc[byte](s, 64<<10)
	viewErr := read()
	rentErr := BorrowSlice(s, h, func([]byte) error { return nil })
	for _, fd := range fds {
		syscall.Close(fd)
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)

	if !errors.Is(allocErr, ErrOutOfMemory) || !errors.Is(allocErr, ErrNoSecretMemory) || !errors.Is(allocErr, syscall.EMFILE) {
		fmt.Printf("Alloc out of descriptors = %v, want ErrOutOfMemory and ErrNoSecretMemory wrapping EMFILE\n", allocErr)
		return 1
	}
	if viewErr != nil || rentErr != nil {
		fmt.Printf("out of descriptors, after a refused Alloc: View = %v, Borrow = %v; want the entry\n", viewErr, rentErr)
		return 1
	}
	if err := s.checkInvariants(); err != nil {
		fmt.Println("invariants:", err)
		return 1
	}
	if err := read(); err != nil {
		fmt.Println("view with descriptors free again:", err)
		return 1
	}
	if err := s.Close(); err != nil {
		fmt.Println("Close:", err)
		return 1
	}
	if held, _ := osmem.MapsHeld(); held != held0 {
		fmt.Printf("after Close %d mappings counted, %d before New\n", held, held0)
		return 1
	}
	fmt.Printf("ok %d descriptors taken; Alloc: %v\n", len(fds), allocErr)
	return 0
}

//go:build windows

package memscan

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// mapBuffer returns size bytes of committed private memory from
// VirtualAlloc, outside the Go heap, so that what is read into it is never
// copied by the runtime and can be wiped for certain. Locking keeps the copy
// out of the pagefile where the working set allows; a refusal is no reason
// to refuse a scan. Release it with unmapBuffer.
func mapBuffer(size int) ([]byte, error) {
	addr, err := windows.VirtualAlloc(0, uintptr(size), windows.MEM_RESERVE|windows.MEM_COMMIT, windows.PAGE_READWRITE)
	if err != nil {
		return nil, fmt.Errorf("memscan: VirtualAlloc read buffer: %w", err)
	}
	_ = windows.VirtualLock(addr, uintptr(size))
	return unsafe.Slice((*byte)(ptr(addr)), size), nil
}

// unmapBuffer wipes b and returns it to the system.
func unmapBuffer(b []byte) error {
	clear(b)
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	_ = windows.VirtualUnlock(addr, uintptr(len(b)))
	if err := windows.VirtualFree(addr, 0, windows.MEM_RELEASE); err != nil {
		return fmt.Errorf("memscan: VirtualFree read buffer: %w", err)
	}
	return nil
}

// ptr turns an address from VirtualAlloc into a pointer. The memory is
// outside the Go heap; loading the pointer through memory keeps vet's
// unsafeptr check, which cannot tell, from flagging a sound conversion.
func ptr(addr uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&addr))
}

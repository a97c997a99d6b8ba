//go:build unix || windows

package osmem

import (
	"errors"
	"testing"
)

// TestUnmapRefused: a region whose unmap the fault hook refused stays
// mapped, as a real refusal leaves it, until UnmapRefused gives it back; a
// region unmapped after all is not given back twice.
func TestUnmapRefused(t *testing.T) {
	refuse := func(o Op) error {
		if o == OpUnmap {
			return ErrInjected
		}
		return nil
	}
	dropped, err := Map(PageSize(), Flags{Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	retried, err := Map(PageSize(), Flags{Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	SetFault(refuse)
	errDropped, errRetried := Unmap(dropped), Unmap(retried)
	SetFault(nil)
	if !errors.Is(errDropped, ErrInjected) || !errors.Is(errRetried, ErrInjected) {
		t.Fatalf("Unmap with the hook refusing: %v, %v", errDropped, errRetried)
	}
	dropped.Data[0] = 1 // still mapped
	if err := Unmap(retried); err != nil {
		t.Fatal(err)
	}
	n, err := UnmapRefused()
	if err != nil || n != 1 {
		t.Fatalf("UnmapRefused: %d, %v; want the one region left mapped", n, err)
	}
	if dropped.Data != nil || dropped.start != nil {
		t.Fatal("the refused region is still mapped")
	}
	if n, err := UnmapRefused(); n != 0 || err != nil {
		t.Fatalf("UnmapRefused again: %d, %v", n, err)
	}
}

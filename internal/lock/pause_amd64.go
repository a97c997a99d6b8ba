package lock

// pause is the x86 spin-wait hint: it lets a sibling hyperthread run and
// keeps the spin loop from flooding the memory bus.
//
//go:noescape
func pause()

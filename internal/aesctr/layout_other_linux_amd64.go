//go:build !go1.26 || go1.27

package aesctr

// On Go releases whose runtime layout has not been checked, guardCanary is
// never chosen (layoutKnown is false), so the assembly never reads these.
const (
	layoutKnown = false

	offGM        = 0
	offGStackLo  = 0
	offGStackHi  = 0
	offMProcid   = 0
	offMGsignal  = 0
	offMCurg     = 0
	offMID       = 0
	offMNcgocall = 0
	offMNcgo     = 0

	offMNewSigstack = 0
	offMIsextra     = 0
)

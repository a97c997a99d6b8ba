//go:build !unix

package memshuffle

import (
	"fmt"
	"runtime"
)

// DisableCoreDumps is not supported on this platform: it returns an error
// matching ErrUnsupported (and errors.ErrUnsupported).
func DisableCoreDumps() error {
	return fmt.Errorf("%w: disabling core dumps on %s", ErrUnsupported, runtime.GOOS)
}

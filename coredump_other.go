//go:build !unix

package memshuffle

import (
	"errors"
	"fmt"
)

// DisableCoreDumps is not supported on this platform: it returns an error
// wrapping errors.ErrUnsupported.
func DisableCoreDumps() error {
	return fmt.Errorf("memshuffle: disabling core dumps: %w", errors.ErrUnsupported)
}

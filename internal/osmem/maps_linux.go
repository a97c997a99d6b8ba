//go:build linux

package osmem

import (
	"os"
	"strconv"
	"strings"
)

// defaultMaxMapCount is the kernel's default vm.max_map_count
// (DEFAULT_MAX_MAP_COUNT, USHRT_MAX - 5), taken where /proc cannot be read
// (a sandbox without it): a budget of no limit would let the library take
// every mapping there, as it did before it had one.
const defaultMaxMapCount = 65530

// mapCountLimit is vm.max_map_count, or its default where it cannot be
// read.
func mapCountLimit() int64 { return parseMapCount(os.ReadFile("/proc/sys/vm/max_map_count")) }

// parseMapCount reads vm.max_map_count from what reading the file gave.
func parseMapCount(b []byte, err error) int64 {
	if err != nil {
		return defaultMaxMapCount
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return defaultMaxMapCount
	}
	return n
}

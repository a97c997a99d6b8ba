//go:build linux

package osmem

import (
	"os"
	"strconv"
	"strings"
)

// mapCountLimit is vm.max_map_count, or 0 where it cannot be read.
func mapCountLimit() int64 {
	b, err := os.ReadFile("/proc/sys/vm/max_map_count")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

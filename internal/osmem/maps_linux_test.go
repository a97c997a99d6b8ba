package osmem

import (
	"errors"
	"io/fs"
	"testing"
)

// TestParseMapCount: vm.max_map_count as the file gives it, and the
// kernel's default where the file cannot be read or makes no sense. With
// no /proc the budget was 0, no limit, and the library could take every
// mapping again.
func TestParseMapCount(t *testing.T) {
	for _, c := range []struct {
		name string
		b    string
		err  error
		want int64
	}{
		{"default", "65530\n", nil, 65530},
		{"raised", "262144\n", nil, 262144},
		{"no /proc", "", fs.ErrNotExist, defaultMaxMapCount},
		{"refused", "", fs.ErrPermission, defaultMaxMapCount},
		{"garbage", "lots\n", nil, defaultMaxMapCount},
		{"zero", "0\n", nil, defaultMaxMapCount},
		{"read error", "65530", errors.New("EIO"), defaultMaxMapCount},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := parseMapCount([]byte(c.b), c.err); got != c.want {
				t.Fatalf("parseMapCount(%q, %v) = %d, want %d", c.b, c.err, got, c.want)
			}
		})
	}
}

//go:build unix && !linux

package osmem

// checkHeadroom refuses nothing: only Linux is checked against RLIMIT_AS
// and RLIMIT_DATA (see the Linux Headroom).
func checkHeadroom(int, Flags) error { return nil }

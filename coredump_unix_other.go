//go:build unix && !linux

package memshuffle

func notDumpable() error { return nil }

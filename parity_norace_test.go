//go:build !race

package memshuffle

// scanProcessMemory is true without -race; see parity_race_test.go.
const scanProcessMemory = true

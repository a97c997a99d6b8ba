//go:build race

package memshuffle

// scanProcessMemory is false in a -race build: the race detector's shadow
// memory makes each search of the process's memory take seconds, so
// TestProcessMemoryParity runs its operations there but searches only
// without -race (go test ./... in .ci/run does).
const scanProcessMemory = false

//go:build !race

package memshuffle

const copiesUnderRace = false

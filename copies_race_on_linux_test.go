//go:build race

package memshuffle

// copiesUnderRace reports a -race build, whose shadow memory and slower
// crypto make TestAdapterCopies too slow to be worth running.
const copiesUnderRace = true

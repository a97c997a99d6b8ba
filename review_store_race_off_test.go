//go:build !race

package memshuffle

// reviewRaceBuild: see review_store_race_on_test.go.
const reviewRaceBuild = false

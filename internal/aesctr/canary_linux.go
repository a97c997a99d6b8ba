package aesctr

// canaryHits counts the calls under guardCanary that found a canary
// overwritten and wiped the signal stack. The assembly increments it
// atomically; only tests read it. It stays 0 off amd64.
var canaryHits uint64

package memshuffle

// SecretMode reports whether the program was built with
// GOEXPERIMENT=runtimesecret on a platform where runtime/secret erases
// what a function leaves behind (linux/amd64 and linux/arm64, as of Go
// 1.26). In secret mode every callback the library runs with plaintext
// (Borrow and its siblings, the fill of ReadFrom and CopyFrom, the reader
// of ReadAll and ReadUntil, the writer of WriteTo, the crypto adapters
// NewSigner, MAC, NewAEAD and ReadPrivateKey) runs inside
// secret.Do: the registers and stack it used are erased when it returns,
// and the heap memory it allocated is erased once the garbage collector
// finds it unreachable. Without it those callbacks run as plain calls, and whatever
// they leave on the stack or the heap stays readable until reused.
//
// Secret mode does not reach global variables a callback writes, goroutines
// it starts, or values that outlive it (anything stored where the program
// can still reach it); see the package documentation.
func SecretMode() bool { return secretMode }

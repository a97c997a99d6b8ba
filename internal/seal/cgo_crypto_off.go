//go:build !goexperiment.boringcrypto

package seal

// CryptoInGo reports whether the standard library's AES, GCM and SHA-2 run
// as Go and assembly. With BoringCrypto they call C through cgo, which
// hands the goroutine's P to the scheduler and may end with the goroutine
// waiting for one: fatal for a pinned goroutine, so nothing is pinned then.
const CryptoInGo = true

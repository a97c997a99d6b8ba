//go:build !race

package stackscrub

const raceBuild = false

package memshuffle

import "os"

// signalStatus is 1: Plan 9 ends processes with notes, which carry no
// number a shell would add to 128.
func signalStatus(os.Signal) int { return 1 }

module github.com/memshuffle/memshuffle/leakcheck

go 1.26.0

require github.com/memshuffle/memshuffle v0.0.0

require (
	go.uber.org/goleak v1.3.0
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/memshuffle/memshuffle => ../

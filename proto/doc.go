// Package proto holds the worker protocol of yggdrasil 0.1.x (yggdrasil.proto)
// and the Go code generated from it by `make generate`. The package, service
// and message names and every field number are wire facts shared with 0.1.x
// workers.
package proto

// Package testscript is the script environment of the e2e suite: one Setup
// that composes with go-internal's testscript.Params, and the custom commands
// that start the simulated cloud and the fakes in-process, drive faults, and
// wait for what the real programs do.
//
// Setup exports, for every script:
//
//	YGG_SOCKET_DIR  a short directory outside $WORK for UNIX sockets
//	YGG_WORKER_DIR  $WORK/workers, the worker directory for yggd
//	YGG_STATE_DIR   $WORK/state
//	YGG_CONFIG_DIR  $WORK/etc
//
// Commands (each returns an error; "!" is allowed where noted):
//
// (the list is kept in step with the code by TestManual)
package testscript

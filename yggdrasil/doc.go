// Package yggdrasil is the core of the yggdrasil host agent: the JSON messages
// exchanged with the cloud (connection-status, command, event, data), the
// routing of data messages to workers and of their answers back to the cloud,
// the control commands (ping, disconnect, reconnect), the worker table and
// the ordered, bounded queue of outbound messages.
//
// The core talks to the outside world only through small interfaces
// (Transport, WorkerConn, Facts); the adapters that implement them live in
// sub-packages named for what they wrap: mqtt (paho), ipc (gRPC over UNIX
// sockets), supervisor (worker processes), facts (the host's canonical
// facts). The core itself imports no paho, grpc or godbus.
package yggdrasil

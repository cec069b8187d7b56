package grpcbuf

import "google.golang.org/grpc"

// Flow-control windows of yggd's and the SDK's gRPC connections, fixed.
// With gRPC's default window, each side estimates the bandwidth-delay
// product by sending a PING with the data it receives and growing the
// window from the answers: on a UNIX socket that measures nothing useful,
// and at one message in flight it is a PING and its acknowledgement,
// written and read by both processes, on most messages. A fixed window
// turns the estimator off. Window lets a 64 KiB message (and a 1 MiB
// detached content) go without waiting for a window update; ConnWindow
// lets 64 of them be in flight on one connection. Nothing is allocated
// for a window: it bounds what a peer may send before it is read.
const (
	Window     = 4 << 20
	ConnWindow = 16 << 20
)

// ServerWindows are the server options that fix the windows.
func ServerWindows() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(Window), grpc.InitialConnWindowSize(ConnWindow)}
}

// DialWindows are the dial options that fix the windows.
func DialWindows() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(Window), grpc.WithInitialConnWindowSize(ConnWindow)}
}

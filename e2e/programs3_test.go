package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/ygglab/yggdrasil/proto"
)

// Stand-ins for workers of the 0.1.x era that yggd must keep running
// unchanged. They use the wire protocol directly, never our worker SDK, so
// that they do with the addresses exactly what those workers do.
var testPrograms3 = map[string]func() int{
	"upstream-echo-worker": upstreamEchoWorker,
}

// upstreamEchoWorker behaves like the echo worker of yggdrasil 0.1.5
// (worker/echo): it passes YGG_SOCKET_ADDR to gRPC as it is, registers
// "echo" (pid, no detached content, no features) within a second, listens
// with net.Listen("unix", …) on the address exactly as Register returned
// it, and serves Worker.Send. Send returns its receipt at once; in the
// background it dials the dispatcher anew and sends the echo: a fresh
// UUID, response_to = the message's id, and the metadata, content and
// directive unchanged. Like the original it exits when it cannot dial and
// only logs a failed Send. grpc.NewClient stands in for the deprecated
// grpc.Dial: a "unix:" target means the same to both.
func upstreamEchoWorker() int {
	log.SetFlags(log.LstdFlags)
	addr, ok := os.LookupEnv("YGG_SOCKET_ADDR")
	if !ok {
		log.Print("Missing YGG_SOCKET_ADDR environment variable")
		return 1
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Print(err)
		return 1
	}
	defer conn.Close() // held, unused, for the worker's life, as in 0.1.5

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := pb.NewDispatcherClient(conn).Register(ctx, &pb.RegistrationRequest{Handler: "echo", Pid: int64(os.Getpid())})
	if err != nil {
		log.Print(err)
		return 1
	}
	if !r.GetRegistered() {
		log.Print("handler registration failed")
		return 1
	}

	l, err := net.Listen("unix", r.GetAddress())
	if err != nil {
		log.Print(err)
		return 1
	}
	s := grpc.NewServer()
	pb.RegisterWorkerServer(s, &upstreamEcho{dispatcher: addr})
	if err := s.Serve(l); err != nil {
		log.Print(err)
		return 1
	}
	return 0
}

// upstreamEcho is the Worker service of upstreamEchoWorker.
type upstreamEcho struct {
	pb.UnimplementedWorkerServer
	dispatcher string // YGG_SOCKET_ADDR as given
}

func (e *upstreamEcho) Send(_ context.Context, d *pb.Data) (*pb.Receipt, error) {
	go func() {
		log.Printf("echoing %v", string(d.GetContent()))
		conn, err := grpc.NewClient(e.dispatcher, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err) // 0.1.5 dies here too
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		echo := &pb.Data{
			MessageId:  newUUID(),
			ResponseTo: d.GetMessageId(),
			Metadata:   d.GetMetadata(),
			Content:    d.GetContent(),
			Directive:  d.GetDirective(),
		}
		if _, err := pb.NewDispatcherClient(conn).Send(ctx, echo); err != nil {
			log.Print(err)
		}
	}()
	return &pb.Receipt{}, nil
}

// newUUID returns a random version 4 UUID, as github.com/google/uuid's
// New does for 0.1.5.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
